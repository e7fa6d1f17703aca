// Package registration builds the MutatingWebhookConfiguration that sends task pods to the
// webhook. The Helm chart renders the same object from the same values; tests hold the two equal.
package registration

import (
	"fmt"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

// WebhookName is the name of the single webhook in the configuration.
const WebhookName = "pods.taskpod.io"

// Options say where the webhook runs and how the API server should treat failures.
type Options struct {
	Name string // of the MutatingWebhookConfiguration
	// Service, or URL when the webhook runs outside the cluster (tests, demo).
	ServiceNamespace, ServiceName string
	ServicePort                   int32
	URL                           string
	CABundle                      []byte
	FailurePolicy                 admissionregistrationv1.FailurePolicyType // default Ignore
	TimeoutSeconds                int32                                     // default 5
	// ExcludeNamespaces never reach the webhook, whatever their labels: the webhook's own
	// namespace (it must be able to start its own pods) and kube-system.
	ExcludeNamespaces []string
	// SideEffects overrides the honest default from SideEffects(cfg).
	SideEffects admissionregistrationv1.SideEffectClass
}

// Mutating builds the webhook configuration for cfg.
func Mutating(cfg *config.Config, o Options) *admissionregistrationv1.MutatingWebhookConfiguration {
	failure := o.FailurePolicy
	if failure == "" {
		failure = admissionregistrationv1.Ignore
	}
	timeout := o.TimeoutSeconds
	if timeout == 0 {
		timeout = 5
	}
	sideEffects := o.SideEffects
	if sideEffects == "" {
		sideEffects = SideEffects(cfg)
	}
	scope := admissionregistrationv1.NamespacedScope
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	match := admissionregistrationv1.Equivalent

	client := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.URL != "" {
		url := o.URL
		client.URL = &url
	} else {
		path := admission.Path
		port := o.ServicePort
		if port == 0 {
			port = 443
		}
		client.Service = &admissionregistrationv1.ServiceReference{
			Namespace: o.ServiceNamespace, Name: o.ServiceName, Path: &path, Port: &port,
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         WebhookName,
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
			FailurePolicy:           &failure,
			MatchPolicy:             &match,
			NamespaceSelector:       NamespaceSelector(cfg.Namespaces.Selector, o.ExcludeNamespaces),
			MatchConditions:         MatchConditions(cfg),
			SideEffects:             &sideEffects,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &reinvoke,
		}},
	}
}

// SideEffects is NoneOnDryRun when admission may create a missing Secret copy, else None.
func SideEffects(cfg *config.Config) admissionregistrationv1.SideEffectClass {
	if len(cfg.SyncedSecrets()) > 0 {
		return admissionregistrationv1.SideEffectClassNoneOnDryRun
	}
	return admissionregistrationv1.SideEffectClassNone
}

// NamespaceSelector is the opt-in selector with the excluded namespaces ruled out by name.
func NamespaceSelector(optIn *metav1.LabelSelector, exclude []string) *metav1.LabelSelector {
	sel := optIn.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	if len(exclude) > 0 {
		names := append([]string(nil), exclude...)
		sort.Strings(names)
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: names,
		})
	}
	return sel
}

// MatchConditions are CEL expressions that let only task pods that did not opt out reach the
// webhook, so ordinary pods in an opted-in namespace never pay for a webhook call.
func MatchConditions(cfg *config.Config) []admissionregistrationv1.MatchCondition {
	var anyOf []string
	for i := range cfg.TaskPods.Selectors {
		anyOf = append(anyOf, selectorCEL(&cfg.TaskPods.Selectors[i], "object.metadata.labels"))
	}
	isTaskPod := anyOf[0]
	if len(anyOf) > 1 {
		isTaskPod = "(" + strings.Join(anyOf, ") || (") + ")"
	}
	return []admissionregistrationv1.MatchCondition{
		{Name: "task-pod", Expression: isTaskPod},
		{Name: "not-opted-out", Expression: fmt.Sprintf("!(has(object.metadata.annotations) && %s in object.metadata.annotations && object.metadata.annotations[%s] == %s)",
			quote(mutate.OptOutAnnotation), quote(mutate.OptOutAnnotation), quote(mutate.OptOutValue))},
	}
}

// selectorCEL renders a validated label selector as a CEL expression over the map at m.
func selectorCEL(s *metav1.LabelSelector, m string) string {
	var terms []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	has := "has(" + m + ")"
	for _, k := range keys {
		terms = append(terms, fmt.Sprintf("%s && %s in %s && %s[%s] == %s", has, quote(k), m, m, quote(k), quote(s.MatchLabels[k])))
	}
	for _, r := range s.MatchExpressions {
		present := fmt.Sprintf("%s && %s in %s", has, quote(r.Key), m)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			terms = append(terms, fmt.Sprintf("%s && %s[%s] in %s", present, m, quote(r.Key), list(r.Values)))
		case metav1.LabelSelectorOpNotIn:
			terms = append(terms, fmt.Sprintf("!(%s) || !(%s[%s] in %s)", present, m, quote(r.Key), list(r.Values)))
		case metav1.LabelSelectorOpExists:
			terms = append(terms, present)
		case metav1.LabelSelectorOpDoesNotExist:
			terms = append(terms, fmt.Sprintf("!(%s)", present))
		}
	}
	return "(" + strings.Join(terms, ") && (") + ")"
}

// quote renders a CEL string literal. Label keys and values are validated to a safe character
// set already; escaping anyway keeps a future looser input from breaking the expression.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func list(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
