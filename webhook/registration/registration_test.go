package registration_test

import (
	"fmt"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/registration"
)

// evalCEL evaluates a match condition the way the API server does, against a pod's metadata.
func evalCEL(t *testing.T, expr string, podLabels, annotations map[string]string) bool {
	t.Helper()
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType))
	require.NoError(t, err)
	ast, iss := env.Compile(expr)
	require.NoError(t, iss.Err(), expr)
	prg, err := env.Program(ast)
	require.NoError(t, err)
	meta := map[string]any{"name": "p"}
	if podLabels != nil {
		meta["labels"] = podLabels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	out, _, err := prg.Eval(map[string]any{"object": map[string]any{"metadata": meta}})
	require.NoError(t, err, expr)
	return out.Value().(bool)
}

// TestMatchConditionsAgreeWithSelectors checks, for many selectors and label sets, that the CEL
// rendered for the API server selects exactly the pods the webhook's own selector does.
func TestMatchConditionsAgreeWithSelectors(t *testing.T) {
	selectors := map[string]string{
		"matchLabels":         `{matchLabels: {kubernetes_pod_operator: "True"}}`,
		"two labels":          `{matchLabels: {kubernetes_pod_operator: "True", team: data}}`,
		"In":                  `{matchExpressions: [{key: tier, operator: In, values: [batch, etl]}]}`,
		"NotIn":               `{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}`,
		"Exists":              `{matchExpressions: [{key: dag_id, operator: Exists}]}`,
		"DoesNotExist":        `{matchExpressions: [{key: skip, operator: DoesNotExist}]}`,
		"labels + expression": `{matchLabels: {kubernetes_executor: "True"}, matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}`,
		"hyphenated key":      `{matchLabels: {kubernetes-pod-operator: "True"}}`,
		"prefixed key":        `{matchLabels: {airflow.apache.org/task: "yes"}}`,
	}
	labelSets := []map[string]string{
		nil,
		{},
		{"kubernetes_pod_operator": "True"},
		{"kubernetes_pod_operator": "true"},
		{"kubernetes_pod_operator": "True", "team": "data"},
		{"kubernetes_pod_operator": "True", "team": "web"},
		{"tier": "batch"}, {"tier": "web"}, {"tier": ""},
		{"dag_id": "etl"}, {"skip": "1"},
		{"kubernetes_executor": "True"}, {"kubernetes_executor": "True", "tier": "web"},
		{"kubernetes-pod-operator": "True"}, {"airflow.apache.org/task": "yes"},
	}
	for name, sel := range selectors {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte("taskPods: {selectors: [" + sel + "]}"))
			require.NoError(t, err)
			conds := registration.MatchConditions(cfg)
			require.Equal(t, "task-pod", conds[0].Name)
			for _, set := range labelSets {
				want := cfg.Policy().TaskPods[0].Matches(labels.Set(set))
				require.Equal(t, want, evalCEL(t, conds[0].Expression, set, nil), "labels %v, expression %s", set, conds[0].Expression)
			}
		})
	}
}

func TestMatchConditionsAnyOfSeveral(t *testing.T) {
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	expr := registration.MatchConditions(cfg)[0].Expression
	require.True(t, evalCEL(t, expr, map[string]string{"kubernetes_pod_operator": "True"}, nil))
	require.True(t, evalCEL(t, expr, map[string]string{"kubernetes_executor": "True"}, nil))
	require.False(t, evalCEL(t, expr, map[string]string{"app": "web"}, nil))
}

func TestOptOutCondition(t *testing.T) {
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	expr := registration.MatchConditions(cfg)[1].Expression
	for annotations, want := range map[*map[string]string]bool{
		nil:                               true,
		{}:                                true,
		{"taskpod.io/inject": "disabled"}: false,
		{"taskpod.io/inject": "enabled"}:  true,
		{"other": "disabled"}:             true,
	} {
		var a map[string]string
		if annotations != nil {
			a = *annotations
		}
		require.Equal(t, want, evalCEL(t, expr, nil, a), fmt.Sprint(a))
	}
}

func TestMutatingDefaults(t *testing.T) {
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	mwc := registration.Mutating(cfg, registration.Options{
		Name: "taskpod-webhook", ServiceNamespace: "taskpod-system", ServiceName: "taskpod-webhook",
		ExcludeNamespaces: []string{"taskpod-system", "kube-system"},
	})
	w := mwc.Webhooks[0]
	require.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy)
	require.Equal(t, int32(5), *w.TimeoutSeconds)
	require.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects)
	require.Equal(t, []string{"v1"}, w.AdmissionReviewVersions)
	require.Equal(t, "/mutate-v1-pod", *w.ClientConfig.Service.Path)
	require.Equal(t, int32(443), *w.ClientConfig.Service.Port)
	require.Nil(t, w.ClientConfig.URL)
	require.Equal(t, &metav1.LabelSelector{
		MatchLabels: map[string]string{"taskpod.io/inject": "enabled"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "taskpod-system"},
		}},
	}, w.NamespaceSelector)
	require.Equal(t, map[string]string{"taskpod.io/inject": "enabled"}, cfg.Namespaces.Selector.MatchLabels, "the config's selector is not modified")
}
