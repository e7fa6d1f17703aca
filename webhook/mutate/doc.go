// Package mutate holds the pure core of the webhook: given a pod, the policy and the namespace's
// LimitRange bounds, it decides whether the pod is a task pod and fills in what the pod lacks.
//
// It imports only k8s.io/api and k8s.io/apimachinery: no clients, no context, no logging, so that
// every rule can be tested from fixtures alone and the admission path stays cheap.
package mutate
