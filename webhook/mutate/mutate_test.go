package mutate_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

func rl(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func defaultPolicy() *mutate.Policy {
	return &mutate.Policy{
		TaskPods:       []labels.Selector{labels.SelectorFromSet(labels.Set{"kubernetes_pod_operator": "True"})},
		Namespaces:     labels.SelectorFromSet(labels.Set{"taskpod.io/inject": "enabled"}),
		PullSecrets:    []string{"registry-credentials"},
		Requests:       rl("cpu", "100m", "memory", "128Mi"),
		Limits:         rl("cpu", "1", "memory", "1Gi"),
		InitContainers: true,
	}
}

func res(req, lim corev1.ResourceList) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: req, Limits: lim}
}

// requireSameResources compares by value: Quantity's internal form differs between parsed and
// computed values that are equal.
func requireSameResources(t *testing.T, want, got corev1.ResourceRequirements) {
	t.Helper()
	for _, pair := range []struct {
		kind      string
		want, got corev1.ResourceList
	}{{"requests", want.Requests, got.Requests}, {"limits", want.Limits, got.Limits}} {
		require.Len(t, pair.got, len(pair.want), "%s: got %v", pair.kind, pair.got)
		for name, w := range pair.want {
			g, ok := pair.got[name]
			require.True(t, ok, "%s.%s missing", pair.kind, name)
			require.Zero(t, w.Cmp(g), "%s.%s: want %s, got %s", pair.kind, name, w.String(), g.String())
		}
	}
}

func TestResources(t *testing.T) {
	tests := map[string]struct {
		policy  func(*mutate.Policy)
		bounds  mutate.Bounds
		in      corev1.ResourceRequirements
		want    corev1.ResourceRequirements
		changed bool
	}{
		"nothing set gets default requests and limits": {
			want:    res(rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "1", "memory", "1Gi")),
			changed: true,
		},
		"already mutated is unchanged": {
			in:   res(rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "1", "memory", "1Gi")),
			want: res(rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "1", "memory", "1Gi")),
		},
		"request only below default limit gets the default limit": {
			in:      res(rl("cpu", "250m", "memory", "256Mi"), nil),
			want:    res(rl("cpu", "250m", "memory", "256Mi"), rl("cpu", "1", "memory", "1Gi")),
			changed: true,
		},
		"request above default limit gets a limit equal to the request": {
			in:      res(rl("cpu", "2", "memory", "8Gi"), nil),
			want:    res(rl("cpu", "2", "memory", "8Gi"), rl("cpu", "2", "memory", "8Gi")),
			changed: true,
		},
		"limit set is untouched, request left for the API server": {
			in:      res(nil, rl("cpu", "4", "memory", "2Gi")),
			want:    res(nil, rl("cpu", "4", "memory", "2Gi")),
			changed: false,
		},
		"resources are independent: cpu limit set, memory nothing": {
			in:      res(rl("cpu", "3"), rl("cpu", "3")),
			want:    res(rl("cpu", "3", "memory", "128Mi"), rl("cpu", "3", "memory", "1Gi")),
			changed: true,
		},
		"other resources untouched": {
			in: res(rl("ephemeral-storage", "20Gi"), rl("nvidia.com/gpu", "1")),
			want: res(rl("ephemeral-storage", "20Gi", "cpu", "100m", "memory", "128Mi"),
				rl("nvidia.com/gpu", "1", "cpu", "1", "memory", "1Gi")),
			changed: true,
		},
		"default limit switched off: request only": {
			policy:  func(p *mutate.Policy) { p.Limits = rl("memory", "1Gi") },
			want:    res(rl("cpu", "100m", "memory", "128Mi"), rl("memory", "1Gi")),
			changed: true,
		},
		"default request switched off: request follows the limit": {
			policy:  func(p *mutate.Policy) { p.Requests = rl("memory", "128Mi") },
			want:    res(rl("cpu", "1", "memory", "128Mi"), rl("cpu", "1", "memory", "1Gi")),
			changed: true,
		},
		"no defaults at all: nothing": {
			policy: func(p *mutate.Policy) { p.Requests, p.Limits = nil, nil },
		},
		"LimitRange max below default limit clamps the limit": {
			bounds:  mutate.Bounds{Max: rl("cpu", "500m", "memory", "512Mi")},
			want:    res(rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "500m", "memory", "512Mi")),
			changed: true,
		},
		"LimitRange min above default request raises the request": {
			bounds:  mutate.Bounds{Min: rl("cpu", "200m", "memory", "256Mi")},
			want:    res(rl("cpu", "200m", "memory", "256Mi"), rl("cpu", "1", "memory", "1Gi")),
			changed: true,
		},
		"LimitRange max below default request clamps both": {
			bounds:  mutate.Bounds{Max: rl("cpu", "50m")},
			want:    res(rl("cpu", "50m", "memory", "128Mi"), rl("cpu", "50m", "memory", "1Gi")),
			changed: true,
		},
		"LimitRange ratio caps the limit": {
			bounds:  mutate.Bounds{MaxRatio: rl("cpu", "4", "memory", "2")},
			want:    res(rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "400m", "memory", "256Mi")),
			changed: true,
		},
		"LimitRange ratio with a user request": {
			bounds:  mutate.Bounds{MaxRatio: rl("cpu", "2")},
			in:      res(rl("cpu", "300m"), nil),
			want:    res(rl("cpu", "300m", "memory", "128Mi"), rl("cpu", "600m", "memory", "1Gi")),
			changed: true,
		},
		"LimitRange clamp never puts a limit below the user's request": {
			bounds:  mutate.Bounds{Max: rl("cpu", "500m")},
			in:      res(rl("cpu", "2"), nil),
			want:    res(rl("cpu", "2", "memory", "128Mi"), rl("cpu", "2", "memory", "1Gi")),
			changed: true,
		},
		"large memory with ratio does not overflow": {
			bounds:  mutate.Bounds{MaxRatio: rl("memory", "1500m")},
			in:      res(rl("memory", "64Ti"), nil),
			want:    res(rl("cpu", "100m", "memory", "64Ti"), rl("cpu", "1", "memory", "64Ti")),
			changed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := defaultPolicy()
			if tc.policy != nil {
				tc.policy(p)
			}
			spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Resources: tc.in}}}
			changed := mutate.Resources(&spec, p, tc.bounds)
			require.Equal(t, tc.changed, changed)
			requireSameResources(t, tc.want, spec.Containers[0].Resources)

			// Running again on the output changes nothing.
			again := spec.DeepCopy()
			require.False(t, mutate.Resources(again, p, tc.bounds))
			require.Equal(t, spec, *again)
		})
	}
}

func TestResourcesContainers(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := map[string]struct {
		initContainers bool
		spec           corev1.PodSpec
		wantDefaulted  []string // container names that got defaults
	}{
		"init containers defaulted when enabled": {
			initContainers: true,
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init"}},
				Containers:     []corev1.Container{{Name: "base"}},
			},
			wantDefaulted: []string{"init", "base"},
		},
		"plain init containers skipped when disabled": {
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init"}},
				Containers:     []corev1.Container{{Name: "base"}},
			},
			wantDefaulted: []string{"base"},
		},
		"native sidecars always defaulted": {
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init"}, {Name: "proxy", RestartPolicy: &always}},
				Containers:     []corev1.Container{{Name: "base"}},
			},
			wantDefaulted: []string{"proxy", "base"},
		},
		"pod-level resources leave containers alone": {
			initContainers: true,
			spec: corev1.PodSpec{
				Resources:  &corev1.ResourceRequirements{Limits: rl("cpu", "2", "memory", "2Gi")},
				Containers: []corev1.Container{{Name: "base"}},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := defaultPolicy()
			p.InitContainers = tc.initContainers
			spec := tc.spec.DeepCopy()
			changed := mutate.Resources(spec, p, mutate.Bounds{})
			require.Equal(t, len(tc.wantDefaulted) > 0, changed)
			var got []string
			for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
				if len(c.Resources.Limits) > 0 {
					got = append(got, c.Name)
				}
			}
			require.Equal(t, tc.wantDefaulted, got)
			require.False(t, mutate.Resources(spec, p, mutate.Bounds{}), "second run must change nothing")
		})
	}
}

func TestPullSecrets(t *testing.T) {
	ref := func(names ...string) []corev1.LocalObjectReference {
		var r []corev1.LocalObjectReference
		for _, n := range names {
			r = append(r, corev1.LocalObjectReference{Name: n})
		}
		return r
	}
	tests := map[string]struct {
		configured []string
		in, want   []corev1.LocalObjectReference
		changed    bool
	}{
		"none listed":                 {configured: []string{"reg"}, want: ref("reg"), changed: true},
		"author entries kept first":   {configured: []string{"reg"}, in: ref("mine", "other"), want: ref("mine", "other", "reg"), changed: true},
		"already listed: unchanged":   {configured: []string{"reg"}, in: ref("reg"), want: ref("reg")},
		"already listed by author":    {configured: []string{"reg"}, in: ref("mine", "reg"), want: ref("mine", "reg")},
		"several in configured order": {configured: []string{"a", "b"}, in: ref("b"), want: ref("b", "a"), changed: true},
		"nothing configured":          {in: ref("mine"), want: ref("mine")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := corev1.PodSpec{ImagePullSecrets: tc.in}
			require.Equal(t, tc.changed, mutate.PullSecrets(&spec, tc.configured))
			require.Equal(t, tc.want, spec.ImagePullSecrets)
			require.False(t, mutate.PullSecrets(&spec, tc.configured), "second run must change nothing")
		})
	}
}

func TestPodAnnotation(t *testing.T) {
	tests := map[string]struct {
		pod  corev1.Pod
		want string
		same bool
	}{
		"records both changes": {
			pod:  corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}}},
			want: "imagePullSecrets,resources",
		},
		"records only what changed": {
			pod: corev1.Pod{Spec: corev1.PodSpec{
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
				Containers:       []corev1.Container{{Name: "base"}},
			}},
			want: "resources",
		},
		"keeps what an earlier invocation recorded": {
			pod: corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{mutate.MutatedAnnotation: "imagePullSecrets"}},
				Spec: corev1.PodSpec{
					ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
					Containers:       []corev1.Container{{Name: "base"}},
				},
			},
			want: "imagePullSecrets,resources",
		},
		"already mutated: no annotation change": {
			pod: corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{mutate.MutatedAnnotation: "imagePullSecrets,resources"}},
				Spec: corev1.PodSpec{
					ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
					Containers: []corev1.Container{{Name: "base", Resources: res(
						rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "1", "memory", "1Gi"))}},
				},
			},
			want: "imagePullSecrets,resources",
			same: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pod := tc.pod.DeepCopy()
			changes := mutate.Pod(pod, defaultPolicy(), mutate.Bounds{})
			require.Equal(t, tc.same, len(changes) == 0)
			require.Equal(t, tc.want, pod.Annotations[mutate.MutatedAnnotation])
			require.Empty(t, mutate.Pod(pod, defaultPolicy(), mutate.Bounds{}))
		})
	}
}

func TestDecide(t *testing.T) {
	optedIn := map[string]string{"taskpod.io/inject": "enabled"}
	kpo := map[string]string{"kubernetes_pod_operator": "True", "dag_id": "etl"}
	tests := map[string]struct {
		labels, annotations, nsLabels map[string]string
		policy                        func(*mutate.Policy)
		want                          mutate.Decision
	}{
		"task pod in opted-in namespace":     {labels: kpo, nsLabels: optedIn, want: mutate.Decision{Mutate: true, Reason: mutate.ReasonSelectedTaskPod}},
		"task pod, namespace not opted in":   {labels: kpo, nsLabels: map[string]string{"team": "a"}, want: mutate.Decision{Reason: mutate.ReasonNamespaceOptOut}},
		"task pod, namespace without labels": {labels: kpo, want: mutate.Decision{Reason: mutate.ReasonNamespaceOptOut}},
		"non-task pod":                       {labels: map[string]string{"app": "web"}, nsLabels: optedIn, want: mutate.Decision{Reason: mutate.ReasonNotTaskPod}},
		"label value is case sensitive":      {labels: map[string]string{"kubernetes_pod_operator": "true"}, nsLabels: optedIn, want: mutate.Decision{Reason: mutate.ReasonNotTaskPod}},
		"pod opted out": {labels: kpo, annotations: map[string]string{mutate.OptOutAnnotation: mutate.OptOutValue}, nsLabels: optedIn,
			want: mutate.Decision{Reason: mutate.ReasonPodOptOut}},
		"other annotation value does not opt out": {labels: kpo, annotations: map[string]string{mutate.OptOutAnnotation: "enabled"}, nsLabels: optedIn,
			want: mutate.Decision{Mutate: true, Reason: mutate.ReasonSelectedTaskPod}},
		"any of several selectors": {
			labels: map[string]string{"kubernetes-pod-operator": "True"}, nsLabels: optedIn,
			policy: func(p *mutate.Policy) {
				p.TaskPods = append(p.TaskPods, labels.SelectorFromSet(labels.Set{"kubernetes-pod-operator": "True"}))
			},
			want: mutate.Decision{Mutate: true, Reason: mutate.ReasonSelectedTaskPod},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := defaultPolicy()
			if tc.policy != nil {
				tc.policy(p)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels, Annotations: tc.annotations}}
			require.Equal(t, tc.want, p.Decide(pod, tc.nsLabels))
		})
	}
}

func TestBoundsFrom(t *testing.T) {
	item := func(typ corev1.LimitType, min, max, ratio corev1.ResourceList) corev1.LimitRangeItem {
		return corev1.LimitRangeItem{Type: typ, Min: min, Max: max, MaxLimitRequestRatio: ratio}
	}
	ranges := []corev1.LimitRange{
		{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
			item(corev1.LimitTypeContainer, rl("cpu", "10m"), rl("cpu", "2", "memory", "4Gi"), rl("cpu", "10")),
			item(corev1.LimitTypePod, rl("cpu", "1"), rl("cpu", "100m"), nil), // pod-level: ignored
		}}},
		{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
			item(corev1.LimitTypeContainer, rl("cpu", "50m"), rl("cpu", "4", "memory", "2Gi"), rl("cpu", "4")),
		}}},
	}
	b := mutate.BoundsFrom(ranges)
	requireSameResources(t, res(rl("cpu", "50m"), rl("cpu", "2", "memory", "2Gi")), res(b.Min, b.Max))
	requireSameResources(t, res(nil, rl("cpu", "4")), res(nil, b.MaxRatio))
	require.Equal(t, mutate.Bounds{}, mutate.BoundsFrom(nil))
}
