package mutate

import corev1 "k8s.io/api/core/v1"

// PullSecrets appends each name not yet listed in spec.imagePullSecrets, keeping the author's
// entries and their order, and reports whether it added any.
func PullSecrets(spec *corev1.PodSpec, names []string) bool {
	changed := false
	for _, name := range names {
		if hasPullSecret(spec.ImagePullSecrets, name) {
			continue
		}
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
		changed = true
	}
	return changed
}

func hasPullSecret(refs []corev1.LocalObjectReference, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}
