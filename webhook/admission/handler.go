package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

// Path is where the API server sends pod admission requests.
const Path = "/mutate-v1-pod"

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Handler mutates task pods at CREATE. It is safe for concurrent use.
type Handler struct {
	policy   *mutate.Policy
	cache    client.Reader // the manager's cache: Namespaces and LimitRanges only
	live     client.Reader // the API server, for a namespace the cache has not seen yet
	excluded map[string]bool
	copies   SecretCopies
	log      logr.Logger
	metrics  *Metrics
}

// SecretCopies creates the synced pull secrets a namespace lacks. Implemented by the sync loop.
type SecretCopies interface {
	EnsureCopies(ctx context.Context, namespace string) error
}

// Options configure a Handler.
type Options struct {
	Policy *mutate.Policy
	// Cache must be able to read Namespaces and LimitRanges; Live is asked only when the cache
	// does not know the pod's namespace (it was created a moment ago).
	Cache, Live client.Reader
	// Exclude are namespaces never mutated, whatever their labels (defence in depth: the
	// webhook configuration's namespaceSelector excludes them already).
	Exclude []string
	// Copies, when set, is asked to create missing Secret copies before a pod is admitted.
	Copies  SecretCopies
	Log     logr.Logger
	Metrics *Metrics
}

// NewHandler builds a Handler.
func NewHandler(o Options) *Handler {
	h := &Handler{policy: o.Policy, cache: o.Cache, live: o.Live, copies: o.Copies, log: o.Log,
		metrics: o.Metrics, excluded: map[string]bool{}}
	for _, ns := range o.Exclude {
		h.excluded[ns] = true
	}
	return h
}

// errBadRequest marks problems with the request itself; they are answered with HTTP 400 so that
// the API server applies the webhook's failurePolicy instead of reading a denial.
var errBadRequest = errors.New("bad admission request")

// Handle implements controller-runtime's admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, err := h.admit(ctx, req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	return resp
}

// admit decides and, for a selected task pod, mutates. Only a malformed request yields an error;
// every other problem admits the pod unchanged, because the webhook must never block pods.
func (h *Handler) admit(ctx context.Context, req admission.Request) (admission.Response, error) {
	if req.Operation != "CREATE" {
		h.metrics.observe(resultSkipped)
		return admission.Allowed(fmt.Sprintf("operation %s is not handled", req.Operation)), nil
	}
	if req.Resource != podResource || req.SubResource != "" {
		h.metrics.observe(resultSkipped)
		return admission.Allowed(fmt.Sprintf("resource %s is not handled", req.Resource.String())), nil
	}
	if len(req.Object.Raw) == 0 {
		return admission.Response{}, fmt.Errorf("%w: request.object is empty", errBadRequest)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Response{}, fmt.Errorf("%w: request.object is not a pod: %v", errBadRequest, err)
	}
	// Built only when a line is written: zap encodes WithValues eagerly, and most requests log nothing.
	log := func() logr.Logger {
		return h.log.WithValues("namespace", req.Namespace, "pod", podName(&pod), "uid", req.UID)
	}

	if d := h.policy.SelectPod(&pod); !d.Mutate {
		h.debug(log, "Skipped pod", "reason", d.Reason)
		h.metrics.observe(resultSkipped)
		return admission.Allowed(d.Reason), nil
	}
	if h.excluded[req.Namespace] {
		h.metrics.observe(resultSkipped)
		return admission.Allowed("namespace excluded"), nil
	}
	nsLabels, err := h.namespaceLabels(ctx, req.Namespace)
	if err != nil {
		return h.failOpen(log(), "reading namespace", err), nil
	}
	if nsLabels == nil {
		h.debug(log, "Skipped pod", "reason", mutate.ReasonNamespaceUnknown)
		h.metrics.observe(resultSkipped)
		return admission.Allowed(mutate.ReasonNamespaceUnknown), nil
	}
	if !h.policy.SelectNamespace(nsLabels) {
		h.debug(log, "Skipped pod", "reason", mutate.ReasonNamespaceOptOut)
		h.metrics.observe(resultSkipped)
		return admission.Allowed(mutate.ReasonNamespaceOptOut), nil
	}
	dryRun := req.DryRun != nil && *req.DryRun
	if h.copies != nil && !dryRun {
		// A namespace labelled a moment ago may not have its copy yet; the pod must not wait
		// for an image pull secret that never comes. Cache hits in the common case.
		if err := h.copies.EnsureCopies(ctx, req.Namespace); err != nil {
			log().Error(err, "Failed to ensure Secret copies before admitting pod")
		}
	}
	var ranges corev1.LimitRangeList
	if err := h.cache.List(ctx, &ranges, client.InNamespace(req.Namespace)); err != nil {
		return h.failOpen(log(), "listing LimitRanges", err), nil
	}

	mutated := pod.DeepCopy()
	changes := mutate.Pod(mutated, h.policy, mutate.BoundsFrom(ranges.Items))
	if len(changes) == 0 {
		h.debug(log, "Admitted pod unchanged", "reason", "already has everything")
		h.metrics.observe(resultUnchanged)
		return admission.Allowed("already mutated"), nil
	}
	raw, err := json.Marshal(mutated)
	if err != nil {
		return h.failOpen(log(), "encoding pod", err), nil
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	if !resp.Allowed { // the patch could not be computed
		return h.failOpen(log(), "computing patch", errors.New(resp.Result.Message)), nil
	}
	log().Info("Mutated pod", "changes", changes, "dryRun", dryRun)
	h.metrics.observe(resultMutated)
	return resp, nil
}

// debug writes a V(1) line, building the request's log fields only if debug logging is on.
func (h *Handler) debug(log func() logr.Logger, msg string, kv ...any) {
	if h.log.V(1).Enabled() {
		log().V(1).Info(msg, kv...)
	}
}

// namespaceLabels returns the labels of the namespace, nil if it does not exist.
func (h *Handler) namespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	var ns corev1.Namespace
	err := h.cache.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) && h.live != nil {
		// A namespace created a moment ago may not have reached the cache yet.
		err = h.live.Get(ctx, client.ObjectKey{Name: name}, &ns)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if ns.Labels == nil {
		return map[string]string{}, nil
	}
	return ns.Labels, nil
}

// failOpen admits the pod unchanged: a webhook that cannot do its job must not block pods.
func (h *Handler) failOpen(log logr.Logger, what string, err error) admission.Response {
	log.Error(err, "Admitted pod unchanged after an error", "step", what)
	h.metrics.observe(resultError)
	return admission.Allowed("taskpod-webhook: " + what + " failed; pod admitted unchanged").
		WithWarnings("taskpod-webhook could not apply its defaults to this pod: " + what + " failed")
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
