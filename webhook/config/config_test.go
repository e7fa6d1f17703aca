package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

func TestDefaults(t *testing.T) {
	for name, doc := range map[string]string{"empty": "", "empty mapping": "{}", "null": "null", "comments only": "# nothing\n"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(doc))
			require.NoError(t, err)
			p := cfg.Policy()
			require.Equal(t, []string{"registry-credentials"}, p.PullSecrets)
			require.True(t, p.InitContainers)
			require.Len(t, p.TaskPods, 2)
			require.True(t, p.TaskPods[0].Matches(labels.Set{"kubernetes_pod_operator": "True"}))
			require.True(t, p.TaskPods[1].Matches(labels.Set{"kubernetes_executor": "True"}))
			require.True(t, p.SelectNamespace(map[string]string{"taskpod.io/inject": "enabled"}))
			require.False(t, p.SelectNamespace(map[string]string{"taskpod.io/inject": "disabled"}))
			requireQuantity(t, "100m", p.Requests[corev1.ResourceCPU])
			requireQuantity(t, "128Mi", p.Requests[corev1.ResourceMemory])
			requireQuantity(t, "1", p.Limits[corev1.ResourceCPU])
			requireQuantity(t, "1Gi", p.Limits[corev1.ResourceMemory])
		})
	}
}

func requireQuantity(t *testing.T, want string, got resource.Quantity) {
	t.Helper()
	w := resource.MustParse(want)
	require.Zero(t, w.Cmp(got), "want %s, got %s", want, got.String())
}

func TestIssueExample(t *testing.T) {
	cfg, err := config.Parse([]byte(`
taskPods:
  selectors:
  - matchLabels: {kubernetes_pod_operator: "True"}
  - matchLabels: {kubernetes_executor: "True"}
  - matchExpressions: [{key: kubernetes-pod-operator, operator: In, values: ["True"]}]
namespaces:
  selector: {matchLabels: {team: data}}
imagePullSecrets:
- name: registry-credentials
- name: second-registry
resources:
  initContainers: false
  defaults:
    requests: {cpu: 0.25, memory: 256Mi}
    limits:   {cpu: 2, memory: ""}
`))
	require.NoError(t, err)
	p := cfg.Policy()
	require.Equal(t, []string{"registry-credentials", "second-registry"}, p.PullSecrets)
	require.False(t, p.InitContainers)
	require.Len(t, p.TaskPods, 3)
	require.True(t, p.TaskPods[2].Matches(labels.Set{"kubernetes-pod-operator": "True"}))
	require.True(t, p.SelectNamespace(map[string]string{"team": "data"}))
	require.False(t, p.SelectNamespace(map[string]string{"taskpod.io/inject": "enabled"}), "a given selector replaces the default")
	requireQuantity(t, "250m", p.Requests[corev1.ResourceCPU])
	requireQuantity(t, "2", p.Limits[corev1.ResourceCPU])
	_, hasMemLimit := p.Limits[corev1.ResourceMemory]
	require.False(t, hasMemLimit, "an empty string switches the default off")
}

func TestEmptyListsStayEmpty(t *testing.T) {
	cfg, err := config.Parse([]byte("imagePullSecrets: []\nnamespaces: {selector: {}}\n"))
	require.NoError(t, err)
	require.Empty(t, cfg.Policy().PullSecrets)
	require.True(t, cfg.Policy().SelectNamespace(nil), "an empty selector opts every namespace in")
}

func TestBadConfig(t *testing.T) {
	tests := map[string]struct {
		doc  string
		want string
	}{
		"not YAML":                   {doc: "taskPods: [", want: "not valid YAML"},
		"top level is a list":        {doc: "- a", want: "(top level): want a mapping, got a list"},
		"unknown top-level key":      {doc: "imagePullSecret: []", want: `imagePullSecret: unknown key`},
		"unknown nested key":         {doc: "resources: {defaults: {request: {cpu: 1}}}", want: "resources.defaults.request: unknown key (known keys here: limits, requests)"},
		"unknown resource":           {doc: "resources: {defaults: {limits: {gpu: 1}}}", want: "resources.defaults.limits.gpu: unknown key"},
		"unknown selector key":       {doc: "taskPods: {selectors: [{matchLabel: {a: b}}]}", want: "taskPods.selectors[0].matchLabel: unknown key"},
		"unparsable quantity":        {doc: "resources: {defaults: {requests: {memory: 1GB}}}", want: `resources.defaults.requests.memory: "1GB" is not a quantity`},
		"negative quantity":          {doc: "resources: {defaults: {requests: {cpu: -1}}}", want: "resources.defaults.requests.cpu: \"-1\" must be greater than zero"},
		"quantity of the wrong kind": {doc: "resources: {defaults: {requests: {cpu: [1]}}}", want: "resources.defaults.requests.cpu: want a quantity such as 500m or 1Gi, got a list"},
		"request above limit":        {doc: "resources: {defaults: {requests: {memory: 2Gi}}}", want: "resources.defaults.requests.memory: 2Gi is above resources.defaults.limits.memory (1Gi)"},
		"request above set limit":    {doc: "resources: {defaults: {requests: {cpu: 500m}, limits: {cpu: 250m}}}", want: "resources.defaults.requests.cpu: 500m is above"},
		"invalid selector operator":  {doc: "taskPods: {selectors: [{matchExpressions: [{key: a, operator: Equals, values: [b]}]}]}", want: "taskPods.selectors[0]: "},
		"invalid label value":        {doc: "taskPods: {selectors: [{matchLabels: {a: 'not valid!'}}]}", want: "taskPods.selectors[0]: "},
		"invalid namespace selector": {doc: "namespaces: {selector: {matchExpressions: [{key: a, operator: In}]}}", want: "namespaces.selector: "},
		"empty task-pod selector":    {doc: "taskPods: {selectors: [{}]}", want: "taskPods.selectors[0]: an empty selector would match every pod"},
		"no task-pod selectors":      {doc: "taskPods: {selectors: []}", want: "taskPods.selectors: must list at least one selector"},
		"empty secret name":          {doc: "imagePullSecrets: [{name: ''}]", want: "imagePullSecrets[0].name: must not be empty"},
		"missing secret name":        {doc: "imagePullSecrets: [{}]", want: "imagePullSecrets[0].name: must not be empty"},
		"invalid secret name":        {doc: "imagePullSecrets: [{name: Registry_Creds}]", want: `imagePullSecrets[0].name: "Registry_Creds" is not a valid Secret name`},
		"duplicate secret name":      {doc: "imagePullSecrets: [{name: a}, {name: a}]", want: `imagePullSecrets[1].name: "a" is listed twice`},
		"secret name not a string":   {doc: "imagePullSecrets: [{name: 5}]", want: "imagePullSecrets[0].name: want a string, got a number"},
		"initContainers not a bool":  {doc: "resources: {initContainers: yes please}", want: "resources.initContainers: want true or false, got a string"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte("imagePullSecrets: [{name: reg}]\n"), 0o600))
	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, []string{"reg"}, cfg.Policy().PullSecrets)

	_, err = config.Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "reading config")

	require.NoError(t, os.WriteFile(path, []byte("bogus: 1\n"), 0o600))
	_, err = config.Load(path)
	require.ErrorContains(t, err, "config "+path+": bogus: unknown key")
}
