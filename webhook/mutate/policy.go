package mutate

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	// OptOutAnnotation on a pod set to OptOutValue keeps the webhook away from that pod.
	OptOutAnnotation = "taskpod.io/inject"
	// OptOutValue is the value of OptOutAnnotation that opts a pod out.
	OptOutValue = "disabled"
	// MutatedAnnotation lists, comma-separated, what the webhook changed on the pod.
	MutatedAnnotation = "taskpod.io/mutated"
)

// Names of the changes recorded in MutatedAnnotation, in the order they are written.
const (
	ChangeImagePullSecrets = "imagePullSecrets"
	ChangeResources        = "resources"
)

// Policy is the validated configuration the mutation applies. Build it with package config.
type Policy struct {
	// TaskPods selects task pods: a pod is one if it matches any of these selectors.
	TaskPods []labels.Selector
	// Namespaces selects the namespaces that opted in.
	Namespaces labels.Selector
	// PullSecrets are the secret names added to spec.imagePullSecrets, in this order.
	PullSecrets []string
	// Requests and Limits are the per-container defaults; a resource missing from a list gets no
	// default of that kind.
	Requests corev1.ResourceList
	Limits   corev1.ResourceList
	// InitContainers says whether plain init containers get defaults too. Native sidecars (init
	// containers with restartPolicy Always) run beside the main containers and always do.
	InitContainers bool
}

// IsTaskPod reports whether the pod's labels match one of the task-pod selectors.
func (p *Policy) IsTaskPod(pod *corev1.Pod) bool {
	set := labels.Set(pod.Labels)
	for _, s := range p.TaskPods {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// Decision says whether a pod is mutated and, when it is not, why.
type Decision struct {
	Mutate bool
	Reason string
}

// Reasons given in a Decision that skips the pod.
const (
	ReasonNotTaskPod       = "not a task pod"
	ReasonNamespaceOptOut  = "namespace not opted in"
	ReasonPodOptOut        = "pod opted out by annotation"
	ReasonSelectedTaskPod  = "task pod in opted-in namespace"
	ReasonNamespaceUnknown = "namespace not found"
)

// SelectPod applies the rules that need only the pod: it must be a task pod and not opted out.
func (p *Policy) SelectPod(pod *corev1.Pod) Decision {
	if !p.IsTaskPod(pod) {
		return Decision{Reason: ReasonNotTaskPod}
	}
	if pod.Annotations[OptOutAnnotation] == OptOutValue {
		return Decision{Reason: ReasonPodOptOut}
	}
	return Decision{Mutate: true, Reason: ReasonSelectedTaskPod}
}

// SelectNamespace reports whether a namespace with these labels opted in.
func (p *Policy) SelectNamespace(namespaceLabels map[string]string) bool {
	return p.Namespaces != nil && p.Namespaces.Matches(labels.Set(namespaceLabels))
}

// Decide applies all selection rules to a pod in a namespace with the given labels.
func (p *Policy) Decide(pod *corev1.Pod, namespaceLabels map[string]string) Decision {
	if d := p.SelectPod(pod); !d.Mutate {
		return d
	}
	if !p.SelectNamespace(namespaceLabels) {
		return Decision{Reason: ReasonNamespaceOptOut}
	}
	return Decision{Mutate: true, Reason: ReasonSelectedTaskPod}
}
