package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
	"github.com/taskpod/taskpod-webhook/webhook/registration"
)

var (
	optIn     = map[string]string{"taskpod.io/inject": "enabled"}
	kpoLabels = map[string]string{"kubernetes_pod_operator": "True", "dag_id": "etl", "task_id": "extract", "try_number": "1"}
	nsCounter atomic.Int32
)

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// newNamespace creates a uniquely named namespace for one test.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name())))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	require.NoError(t, cp.CreateNamespace(context.Background(), name, labels))
	return name
}

func taskPod(ns string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "base", Image: "etl:1"}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "etl-extract", Namespace: ns, Labels: kpoLabels},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: containers},
	}
}

// create creates the pod and returns it as stored, read back from the API server.
func create(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, cp.Client.Create(ctx, pod))
	var stored corev1.Pod
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored))
	return &stored
}

func requireQuantity(t *testing.T, want string, list corev1.ResourceList, name corev1.ResourceName) {
	t.Helper()
	got, ok := list[name]
	require.True(t, ok, "%s missing in %v", name, list)
	w := resource.MustParse(want)
	require.Zero(t, w.Cmp(got), "%s: want %s, got %s", name, want, got.String())
}

func requireUnmutated(t *testing.T, stored *corev1.Pod) {
	t.Helper()
	require.Empty(t, stored.Spec.ImagePullSecrets)
	require.NotContains(t, stored.Annotations, mutate.MutatedAnnotation)
	require.Empty(t, stored.Spec.Containers[0].Resources.Limits)
}

// skipped reads the handler's count of pods it saw but did not select.
func skipped(t *testing.T) float64 {
	t.Helper()
	families, err := webhook.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "taskpod_webhook_admission_reviews_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "result") == "skipped" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatal("admission metric not registered")
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestTaskPodInOptedInNamespaceIsMutated(t *testing.T) {
	ns := newNamespace(t, optIn)
	stored := create(t, taskPod(ns))
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, stored.Spec.ImagePullSecrets)
	require.Equal(t, "imagePullSecrets,resources", stored.Annotations[mutate.MutatedAnnotation])
	r := stored.Spec.Containers[0].Resources
	requireQuantity(t, "100m", r.Requests, corev1.ResourceCPU)
	requireQuantity(t, "128Mi", r.Requests, corev1.ResourceMemory)
	requireQuantity(t, "1", r.Limits, corev1.ResourceCPU)
	requireQuantity(t, "1Gi", r.Limits, corev1.ResourceMemory)
	require.Equal(t, kpoLabels, stored.Labels, "labels are never touched")
}

func TestKubernetesExecutorWorkerKeepsItsPullSecret(t *testing.T) {
	ns := newNamespace(t, optIn)
	pod := taskPod(ns)
	pod.Labels = map[string]string{"kubernetes_executor": "True", "airflow-worker": "7"}
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "team-registry"}}
	stored := create(t, pod)
	require.Equal(t, []corev1.LocalObjectReference{{Name: "team-registry"}, {Name: "registry-credentials"}}, stored.Spec.ImagePullSecrets)
}

func TestPodThatAlreadyListsTheSecret(t *testing.T) {
	ns := newNamespace(t, optIn)
	pod := taskPod(ns)
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry-credentials"}, {Name: "mine"}}
	stored := create(t, pod)
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}, {Name: "mine"}}, stored.Spec.ImagePullSecrets)
	require.Equal(t, "resources", stored.Annotations[mutate.MutatedAnnotation])
}

func TestNamespaceNotOptedIn(t *testing.T) {
	before := skipped(t)
	ns := newNamespace(t, map[string]string{"team": "web"})
	requireUnmutated(t, create(t, taskPod(ns)))
	require.Equal(t, before, skipped(t), "the namespaceSelector keeps the request away from the webhook")
}

func TestNonTaskPodNeverReachesTheWebhook(t *testing.T) {
	before := skipped(t)
	ns := newNamespace(t, optIn)
	pod := taskPod(ns)
	pod.Labels = map[string]string{"app": "web"}
	requireUnmutated(t, create(t, pod))
	require.Equal(t, before, skipped(t), "matchConditions keep non-task pods away from the webhook")
}

func TestOptOutAnnotation(t *testing.T) {
	ns := newNamespace(t, optIn)
	pod := taskPod(ns)
	pod.Annotations = map[string]string{mutate.OptOutAnnotation: mutate.OptOutValue}
	requireUnmutated(t, create(t, pod))
}

func TestKubeSystemIsExcluded(t *testing.T) {
	ctx := context.Background()
	var ks corev1.Namespace
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks))
	patch := client.MergeFrom(ks.DeepCopy())
	ks.Labels["taskpod.io/inject"] = "enabled"
	require.NoError(t, cp.Client.Patch(ctx, &ks, patch))
	require.NoError(t, cp.CreateNamespace(ctx, "kube-system", nil))
	pod := taskPod("kube-system")
	pod.Name, pod.GenerateName = "", "excluded-"
	requireUnmutated(t, create(t, pod))
}

func TestRequestAboveDefaultLimit(t *testing.T) {
	ns := newNamespace(t, optIn)
	stored := create(t, taskPod(ns, corev1.Container{Name: "base", Image: "train:1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")}}}))
	r := stored.Spec.Containers[0].Resources
	requireQuantity(t, "2", r.Limits, corev1.ResourceCPU)
	requireQuantity(t, "8Gi", r.Limits, corev1.ResourceMemory)
}

func TestXComSidecarGetsLimits(t *testing.T) {
	ns := newNamespace(t, optIn)
	stored := create(t, taskPod(ns,
		corev1.Container{Name: "base", Image: "etl:1"},
		corev1.Container{Name: "airflow-xcom-sidecar", Image: "alpine", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("10Mi")}}}))
	r := stored.Spec.Containers[1].Resources
	requireQuantity(t, "1m", r.Requests, corev1.ResourceCPU)
	requireQuantity(t, "1", r.Limits, corev1.ResourceCPU)
	requireQuantity(t, "1Gi", r.Limits, corev1.ResourceMemory)
}

func limitRange(ns string, item corev1.LimitRangeItem) *corev1.LimitRange {
	item.Type = corev1.LimitTypeContainer
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits", Namespace: ns},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{item}}}
}

// waitForLimitRange waits until the webhook's cache has the namespace's LimitRange.
func waitForLimitRange(t *testing.T, ns string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var list corev1.LimitRangeList
		return webhook.Manager.GetCache().List(context.Background(), &list, client.InNamespace(ns)) == nil && len(list.Items) > 0
	}, 10*time.Second, 20*time.Millisecond)
}

// TestLimitRanges creates a task pod in a namespace with a LimitRange: it must be created (the
// LimitRanger validation runs again after webhooks) with defaults that fit the range.
func TestLimitRanges(t *testing.T) {
	q := resource.MustParse
	tests := map[string]struct {
		item     corev1.LimitRangeItem
		requests map[corev1.ResourceName]string
		limits   map[corev1.ResourceName]string
	}{
		"max below the default limit": {
			item:   corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceMemory: q("512Mi")}},
			limits: map[corev1.ResourceName]string{corev1.ResourceCPU: "500m", corev1.ResourceMemory: "512Mi"},
		},
		// The LimitRanger defaults nothing here, so only the webhook's own clamping keeps the pod
		// valid: the default 100m/1 is a ratio of 10.
		"limit/request ratio": {
			item:     corev1.LimitRangeItem{MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("4")}},
			requests: map[corev1.ResourceName]string{corev1.ResourceCPU: "100m"},
			limits:   map[corev1.ResourceName]string{corev1.ResourceCPU: "400m"},
		},
		"min above the default request": {
			item:     corev1.LimitRangeItem{Min: corev1.ResourceList{corev1.ResourceMemory: q("2Gi")}},
			requests: map[corev1.ResourceName]string{corev1.ResourceMemory: "2Gi"},
			limits:   map[corev1.ResourceName]string{corev1.ResourceMemory: "2Gi"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t, optIn)
			require.NoError(t, cp.Client.Create(context.Background(), limitRange(ns, tc.item)))
			waitForLimitRange(t, ns)
			stored := create(t, taskPod(ns)) // created, not rejected
			r := stored.Spec.Containers[0].Resources
			for res, want := range tc.requests {
				requireQuantity(t, want, r.Requests, res)
			}
			for res, want := range tc.limits {
				requireQuantity(t, want, r.Limits, res)
			}
			require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, stored.Spec.ImagePullSecrets)
		})
	}
}

func TestServerSideDryRun(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, optIn)
	pod := taskPod(ns)
	require.NoError(t, cp.Client.Create(ctx, pod, client.DryRunAll))
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, pod.Spec.ImagePullSecrets, "the dry-run answer shows the mutation")
	err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
	require.True(t, apierrors.IsNotFound(err), "nothing stored, got %v", err)
}

func TestUpdateIsNotMutated(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, optIn)
	stored := create(t, taskPod(ns))
	// Airflow labels its pods after the fact; the webhook must stay out of updates.
	patch := client.MergeFrom(stored.DeepCopy())
	stored.Labels["already_checked"] = "True"
	stored.Annotations[mutate.MutatedAnnotation] = "tampered"
	require.NoError(t, cp.Client.Patch(ctx, stored, patch))
	var after corev1.Pod
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKeyFromObject(stored), &after))
	require.Equal(t, "tampered", after.Annotations[mutate.MutatedAnnotation])
}

func TestWebhookConfigurationAsInstalled(t *testing.T) {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, cp.Client.Get(context.Background(), client.ObjectKey{Name: "taskpod-webhook"}, &mwc))
	require.Len(t, mwc.Webhooks, 1)
	w := mwc.Webhooks[0]
	require.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy)
	require.Equal(t, admissionregistrationv1.SideEffectClassNoneOnDryRun, *w.SideEffects, "admission may create a Secret copy, except on dry-run")
	require.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *w.ReinvocationPolicy)
	require.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, w.Rules[0].Operations)
	require.Equal(t, optIn, w.NamespaceSelector.MatchLabels)
	require.Len(t, w.MatchConditions, 2)
	require.LessOrEqual(t, *w.TimeoutSeconds, int32(10))
}

func TestCacheHoldsNoPods(t *testing.T) {
	err := webhook.Manager.GetCache().Get(context.Background(), client.ObjectKey{Namespace: "probe", Name: "x"}, &corev1.Pod{})
	var notCached *cache.ErrResourceNotCached
	require.ErrorAs(t, err, &notCached, "pods must never be cached")
}

// TestCustomSelectorsAreAcceptedByTheAPIServer checks that the CEL rendered from every selector
// operator compiles in the API server itself, which validates matchConditions on create.
func TestCustomSelectorsAreAcceptedByTheAPIServer(t *testing.T) {
	custom, err := config.Parse([]byte(`
taskPods:
  selectors:
  - matchLabels: {kubernetes-pod-operator: "True", airflow.apache.org/component: task}
  - matchExpressions:
    - {key: tier, operator: In, values: [batch, etl]}
    - {key: tier, operator: NotIn, values: [web]}
    - {key: dag_id, operator: Exists}
    - {key: skip, operator: DoesNotExist}
`))
	require.NoError(t, err)
	o := cp.WebhookOptions(ownNamespace)
	o.Name = "custom-selectors"
	mwc := registration.Mutating(custom, o)
	require.NoError(t, cp.Client.Create(context.Background(), mwc, client.DryRunAll))
}
