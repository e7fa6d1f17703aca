// Package config loads and validates the webhook's configuration file. A Config that Load or
// Parse returned is valid; every problem is reported as one line naming the key.
package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

// Config is the configuration file, as the Helm chart renders it into a ConfigMap. Every key is
// optional; see Default for what an absent key means.
type Config struct {
	TaskPods         TaskPods     `json:"taskPods"`
	Namespaces       Namespaces   `json:"namespaces"`
	ImagePullSecrets []PullSecret `json:"imagePullSecrets"`
	Resources        Resources    `json:"resources"`
	SecretSync       SecretSync   `json:"secretSync"`

	policy mutate.Policy
}

// TaskPods says which pods are task pods.
type TaskPods struct {
	// Selectors: a pod is a task pod if its labels match ANY of them. Default: Airflow's own
	// labels for KubernetesPodOperator and KubernetesExecutor pods.
	Selectors []metav1.LabelSelector `json:"selectors"`
}

// Namespaces says which namespaces opted in.
type Namespaces struct {
	// Selector on namespace labels. Default: taskpod.io/inject=enabled.
	Selector *metav1.LabelSelector `json:"selector"`
}

// PullSecret is one image pull secret injected into task pods.
type PullSecret struct {
	// Name of the Secret in the pod's namespace.
	Name string `json:"name"`
	// Source, when set, is the Secret the sync loop copies into every opted-in namespace under
	// Name. Without it the Secret is managed elsewhere and only its name is injected.
	Source *SecretRef `json:"source,omitempty"`
}

// SecretRef names a Secret.
type SecretRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String renders the reference as namespace/name.
func (r SecretRef) String() string { return r.Namespace + "/" + r.Name }

// SecretSync configures the sync loop.
type SecretSync struct {
	// OnOptOut: what happens to our copy when a namespace opts out. Default: delete.
	OnOptOut OptOutPolicy `json:"onOptOut"`
	// ResyncPeriod is a safety net; changes propagate by watch. Default: 10m.
	ResyncPeriod Duration `json:"resyncPeriod"`
}

// OptOutPolicy is delete or retain.
type OptOutPolicy string

// The opt-out policies.
const (
	OptOutDelete OptOutPolicy = "delete"
	OptOutRetain OptOutPolicy = "retain"
)

// Resources configures default requests and limits.
type Resources struct {
	// InitContainers: also default plain init containers. Default: true.
	InitContainers *bool `json:"initContainers"`
	// Defaults for containers that lack requests or limits.
	Defaults ResourceDefaults `json:"defaults"`
}

// ResourceDefaults are the default requests and limits.
type ResourceDefaults struct {
	Requests Amounts `json:"requests"`
	Limits   Amounts `json:"limits"`
}

// Amounts are quantities per resource. An absent key takes the documented default; an empty
// string switches that default off.
type Amounts struct {
	CPU    *Amount `json:"cpu"`
	Memory *Amount `json:"memory"`
}

// Default values, documented in the README's configuration reference.
const (
	DefaultOptInLabel     = "taskpod.io/inject"
	DefaultOptInValue     = "enabled"
	DefaultPullSecretName = "registry-credentials"
	DefaultRequestCPU     = "100m"
	DefaultRequestMemory  = "128Mi"
	DefaultLimitCPU       = "1"
	DefaultLimitMemory    = "1Gi"
	DefaultInitContainers = true
	DefaultOnOptOut       = OptOutDelete
	DefaultResyncPeriod   = "10m"
	airflowKPOLabel       = "kubernetes_pod_operator"
	airflowExecutorLabel  = "kubernetes_executor"
	airflowTrueLabelValue = "True"
)

// SyncedSecrets returns the entries of ImagePullSecrets that have a source.
func (c *Config) SyncedSecrets() []PullSecret {
	var synced []PullSecret
	for _, s := range c.ImagePullSecrets {
		if s.Source != nil {
			synced = append(synced, s)
		}
	}
	return synced
}

// Policy returns the validated mutation policy.
func (c *Config) Policy() *mutate.Policy { return &c.policy }

// applyDefaults fills every absent key with its default. Absent means nil: an explicit empty
// list stays empty.
func (c *Config) applyDefaults() {
	if c.TaskPods.Selectors == nil {
		c.TaskPods.Selectors = []metav1.LabelSelector{
			{MatchLabels: map[string]string{airflowKPOLabel: airflowTrueLabelValue}},
			{MatchLabels: map[string]string{airflowExecutorLabel: airflowTrueLabelValue}},
		}
	}
	if c.Namespaces.Selector == nil {
		c.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{DefaultOptInLabel: DefaultOptInValue}}
	}
	if c.ImagePullSecrets == nil {
		c.ImagePullSecrets = []PullSecret{{Name: DefaultPullSecretName}}
	}
	if c.Resources.InitContainers == nil {
		v := DefaultInitContainers
		c.Resources.InitContainers = &v
	}
	if c.SecretSync.OnOptOut == "" {
		c.SecretSync.OnOptOut = DefaultOnOptOut
	}
	if c.SecretSync.ResyncPeriod == "" {
		c.SecretSync.ResyncPeriod = DefaultResyncPeriod
	}
	d := &c.Resources.Defaults
	defaultAmount(&d.Requests.CPU, DefaultRequestCPU)
	defaultAmount(&d.Requests.Memory, DefaultRequestMemory)
	defaultAmount(&d.Limits.CPU, DefaultLimitCPU)
	defaultAmount(&d.Limits.Memory, DefaultLimitMemory)
}

func defaultAmount(a **Amount, v string) {
	if *a == nil {
		x := Amount(v)
		*a = &x
	}
}
