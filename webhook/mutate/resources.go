package mutate

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources gives every container that lacks them the policy's default requests and limits, per
// resource and independently, and reports whether it changed anything:
//
//   - nothing set: default request and default limit;
//   - request only: limit = max(default limit, request), so the request is never above the limit;
//   - limit set: untouched (the API server already defaulted the request to it).
//
// Defaults are clamped into the namespace's LimitRange bounds. Resources without a configured
// default (ephemeral-storage, GPUs) are never touched, and a pod that sets pod-level resources
// is left alone: its author sized the pod as a whole and container defaults could contradict it.
func Resources(spec *corev1.PodSpec, p *Policy, b Bounds) bool {
	if spec.Resources != nil || (len(p.Requests) == 0 && len(p.Limits) == 0) {
		return false
	}
	changed := false
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if p.InitContainers || isSidecar(c) {
			changed = container(&c.Resources, p, b) || changed
		}
	}
	for i := range spec.Containers {
		changed = container(&spec.Containers[i].Resources, p, b) || changed
	}
	return changed
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func container(r *corev1.ResourceRequirements, p *Policy, b Bounds) bool {
	changed := false
	// A fixed order keeps patches stable; only cpu and memory are ever defaulted.
	for _, name := range [...]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		changed = defaultResource(r, name, p, b) || changed
	}
	return changed
}

func defaultResource(r *corev1.ResourceRequirements, name corev1.ResourceName, p *Policy, b Bounds) bool {
	if _, ok := r.Limits[name]; ok {
		return false
	}
	defReq, hasDefReq := p.Requests[name]
	defLim, hasDefLim := p.Limits[name]
	req, hasReq := r.Requests[name]

	switch {
	case hasReq && hasDefLim:
		limit := b.clamp(name, defLim)
		if limit.Cmp(req) < 0 {
			limit = req.DeepCopy()
		}
		setLimit(r, name, b.capRatio(name, req, limit))
		return true
	case hasReq:
		return false
	case hasDefReq && hasDefLim:
		request, limit := b.clamp(name, defReq), b.clamp(name, defLim)
		setRequest(r, name, request)
		setLimit(r, name, b.capRatio(name, request, limit))
		return true
	case hasDefReq:
		setRequest(r, name, b.clamp(name, defReq))
		return true
	case hasDefLim:
		// Set the request explicitly to what the API server would default it to, so the outcome
		// does not depend on whether defaulting runs again after webhooks.
		limit := b.clamp(name, defLim)
		setRequest(r, name, limit)
		setLimit(r, name, limit)
		return true
	}
	return false
}

func setRequest(r *corev1.ResourceRequirements, name corev1.ResourceName, q resource.Quantity) {
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	r.Requests[name] = q.DeepCopy()
}

func setLimit(r *corev1.ResourceRequirements, name corev1.ResourceName, q resource.Quantity) {
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	r.Limits[name] = q.DeepCopy()
}
