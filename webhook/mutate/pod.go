package mutate

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Pod fills in what a selected task pod lacks, in place, and returns the names of the changes it
// made (nil when the pod already had everything). Callers mutate a copy and let the admission
// framework diff the two. Running Pod on its own output changes nothing.
func Pod(pod *corev1.Pod, p *Policy, b Bounds) []string {
	var changes []string
	if PullSecrets(&pod.Spec, p.PullSecrets) {
		changes = append(changes, ChangeImagePullSecrets)
	}
	if Resources(&pod.Spec, p, b) {
		changes = append(changes, ChangeResources)
	}
	if len(changes) > 0 {
		recordChanges(pod, changes)
	}
	return changes
}

// recordChanges merges changes into the pod's MutatedAnnotation, keeping what an earlier
// invocation recorded so that reinvocation never loses history.
func recordChanges(pod *corev1.Pod, changes []string) {
	seen := map[string]bool{}
	for _, c := range strings.Split(pod.Annotations[MutatedAnnotation], ",") {
		if c != "" {
			seen[c] = true
		}
	}
	for _, c := range changes {
		seen[c] = true
	}
	var merged []string
	for _, c := range []string{ChangeImagePullSecrets, ChangeResources} {
		if seen[c] {
			merged = append(merged, c)
			delete(seen, c)
		}
	}
	for c := range seen { // unknown entries (a newer version wrote them): keep, after ours
		merged = append(merged, c)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[MutatedAnnotation] = strings.Join(merged, ",")
}
