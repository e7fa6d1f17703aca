package secretsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// Labels and annotations on the copies.
const (
	ManagedByLabel   = "app.kubernetes.io/managed-by"
	ManagedByValue   = "taskpod-webhook"
	SourceAnnotation = "taskpod.io/source"       // namespace/name of the source Secret
	HashAnnotation   = "taskpod.io/content-hash" // keyed hash of type and data, never the data
	FieldManager     = "taskpod-webhook"
	hashPrefix       = "hmac-sha256:"
)

// isOurs reports whether a Secret is a copy this sync loop made and may therefore change.
func isOurs(s *corev1.Secret) bool {
	return s.Labels[ManagedByLabel] == ManagedByValue && s.Annotations[SourceAnnotation] != ""
}

// validSourceType reports whether the source is an image pull secret.
func validSourceType(t corev1.SecretType) bool {
	return t == corev1.SecretTypeDockerConfigJson || t == corev1.SecretTypeDockercfg
}

// contentHash is an HMAC of the Secret's type and data, keyed with the source's UID. A plain hash
// of a low-entropy credential could be matched against a table of known values by anyone who can
// read the annotation (events, audit logs, dashboards); the key makes that useless. The key is
// stable for the life of the source, so restarts do not rewrite every copy.
func contentHash(key []byte, t corev1.SecretType, data map[string][]byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(t))
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Length-prefix each part so that no two different maps hash alike.
		writeLenPrefixed(mac, []byte(k))
		writeLenPrefixed(mac, data[k])
	}
	return hashPrefix + hex.EncodeToString(mac.Sum(nil))
}

func writeLenPrefixed(w interface{ Write([]byte) (int, error) }, b []byte) {
	n := len(b)
	_, _ = w.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	_, _ = w.Write(b)
}

// desiredCopy is the copy of src that namespace ns should hold under the entry's name.
func desiredCopy(ns string, entry config.PullSecret, src *corev1.Secret) *corev1.Secret {
	data := make(map[string][]byte, len(src.Data))
	for k, v := range src.Data {
		data[k] = append([]byte(nil), v...)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      entry.Name,
			Namespace: ns,
			Labels:    map[string]string{ManagedByLabel: ManagedByValue},
			Annotations: map[string]string{
				SourceAnnotation: entry.Source.String(),
				HashAnnotation:   contentHash([]byte(src.UID), src.Type, src.Data),
			},
		},
		Type: src.Type,
		Data: data,
	}
}

// upToDate reports whether an existing copy already holds what desired holds. The content is
// compared by recomputing the hash over the copy's actual data, so an edited copy never passes
// on the strength of its (unchanged) annotation.
func upToDate(key []byte, existing, desired *corev1.Secret) bool {
	return existing.Type == desired.Type &&
		contentHash(key, existing.Type, existing.Data) == desired.Annotations[HashAnnotation] &&
		existing.Annotations[HashAnnotation] == desired.Annotations[HashAnnotation] &&
		existing.Annotations[SourceAnnotation] == desired.Annotations[SourceAnnotation] &&
		existing.Labels[ManagedByLabel] == ManagedByValue
}

// withDesired returns existing with desired's type, data and our label and annotations; other
// labels and annotations someone added are kept.
func withDesired(existing, desired *corev1.Secret) *corev1.Secret {
	out := existing.DeepCopy()
	out.Type = desired.Type
	out.Data = desired.Data
	out.StringData = nil
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	for k, v := range desired.Labels {
		out.Labels[k] = v
	}
	for k, v := range desired.Annotations {
		out.Annotations[k] = v
	}
	return out
}
