package secretsync

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

func source(uid, data string) *corev1.Secret {
	s := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(data)}}
	s.UID = types.UID("uid-" + uid)
	s.Namespace, s.Name = "taskpod-system", "registry-credentials"
	return s
}

func entry() config.PullSecret {
	return config.PullSecret{Name: "registry-credentials", Source: &config.SecretRef{Namespace: "taskpod-system", Name: "registry-credentials"}}
}

func TestContentHash(t *testing.T) {
	tests := map[string]struct {
		a, b corev1.Secret
		same bool
	}{
		"same content and key":         {a: *source("1", `{"auths":{}}`), b: *source("1", `{"auths":{}}`), same: true},
		"other data":                   {a: *source("1", `{"auths":{}}`), b: *source("1", `{"auths":{"r":{}}}`)},
		"other key (source recreated)": {a: *source("1", `{"auths":{}}`), b: *source("2", `{"auths":{}}`)},
		"other type": {a: *source("1", "x"), b: func() corev1.Secret {
			s := source("1", "x")
			s.Type = corev1.SecretTypeDockercfg
			return *s
		}()},
		"keys and values are not confused": {
			a: corev1.Secret{Data: map[string][]byte{"ab": []byte("c")}},
			b: corev1.Secret{Data: map[string][]byte{"a": []byte("bc")}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ha := contentHash([]byte(tc.a.UID), tc.a.Type, tc.a.Data)
			hb := contentHash([]byte(tc.b.UID), tc.b.Type, tc.b.Data)
			require.Equal(t, tc.same, ha == hb)
			require.Regexp(t, "^hmac-sha256:[0-9a-f]{64}$", ha)
		})
	}
}

func TestDesiredCopyAndUpToDate(t *testing.T) {
	src := source("1", `{"auths":{"r":{"auth":"c2VjcmV0"}}}`)
	want := desiredCopy("airflow", entry(), src)
	require.Equal(t, "airflow", want.Namespace)
	require.Equal(t, src.Type, want.Type)
	require.Equal(t, src.Data, want.Data)
	require.Equal(t, ManagedByValue, want.Labels[ManagedByLabel])
	require.Equal(t, "taskpod-system/registry-credentials", want.Annotations[SourceAnnotation])
	for _, v := range want.Annotations {
		require.NotContains(t, v, "c2VjcmV0", "annotations never carry the data")
	}
	want.Data[corev1.DockerConfigJsonKey][0] = 'X'
	require.NotEqual(t, byte('X'), src.Data[corev1.DockerConfigJsonKey][0], "the copy's data is its own")

	key := []byte(src.UID)
	fresh := desiredCopy("airflow", entry(), src)
	tests := map[string]struct {
		edit func(s *corev1.Secret)
		ok   bool
	}{
		"identical":                    {edit: func(*corev1.Secret) {}, ok: true},
		"someone's extra label":        {edit: func(s *corev1.Secret) { s.Labels["team"] = "x" }, ok: true},
		"data edited, annotation kept": {edit: func(s *corev1.Secret) { s.Data[corev1.DockerConfigJsonKey] = []byte("{}") }},
		"key added":                    {edit: func(s *corev1.Secret) { s.Data["extra"] = []byte("x") }},
		"hash annotation removed":      {edit: func(s *corev1.Secret) { delete(s.Annotations, HashAnnotation) }},
		"managed-by label removed":     {edit: func(s *corev1.Secret) { delete(s.Labels, ManagedByLabel) }},
		"type changed":                 {edit: func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			existing := fresh.DeepCopy()
			tc.edit(existing)
			require.Equal(t, tc.ok, upToDate(key, existing, fresh))
			if !tc.ok && existing.Type == fresh.Type {
				require.True(t, upToDate(key, withDesired(existing, fresh), fresh), "withDesired restores it")
			}
		})
	}
}

func TestIsOurs(t *testing.T) {
	ours := desiredCopy("ns", entry(), source("1", "{}"))
	require.True(t, isOurs(ours))
	theirs := ours.DeepCopy()
	delete(theirs.Labels, ManagedByLabel)
	require.False(t, isOurs(theirs))
	labelOnly := ours.DeepCopy()
	labelOnly.Annotations = nil
	require.False(t, isOurs(labelOnly), "a hand-made Secret with our label alone is not ours")
}

func TestCacheConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`
imagePullSecrets:
- {name: a, source: {namespace: src-one, name: only}}
- {name: b, source: {namespace: src-two, name: first}}
- {name: c, source: {namespace: src-two, name: second}}
- {name: d}
`))
	require.NoError(t, err)
	c := CacheConfig(cfg)
	managed := labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue})
	require.Equal(t, managed.String(), c.Namespaces[cache.AllNamespaces].LabelSelector.String(), "elsewhere: only our copies")
	require.Equal(t, fields.OneTermEqualSelector("metadata.name", "only").String(), c.Namespaces["src-one"].FieldSelector.String(), "one source: that Secret only")
	require.Nil(t, c.Namespaces["src-two"].FieldSelector, "several sources in one namespace: the namespace")
	require.Len(t, c.Namespaces, 3)
}
