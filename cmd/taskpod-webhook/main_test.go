package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const fixtures = "../../webhook/mutate/testdata/"

func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func decodePod(t *testing.T, s string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	require.NoError(t, yaml.UnmarshalStrict([]byte(s), &pod))
	return &pod
}

func TestMutatePreview(t *testing.T) {
	out, msg, err := runCLI(t, "", "mutate", "-f", fixtures+"kpo-minimal.pod.yaml")
	require.NoError(t, err)
	pod := decodePod(t, out)
	require.Equal(t, "registry-credentials", pod.Spec.ImagePullSecrets[0].Name)
	require.Equal(t, "1Gi", pod.Spec.Containers[0].Resources.Limits.Memory().String())
	require.Contains(t, msg, "changed imagePullSecrets,resources")
	require.NotContains(t, out, "status:", "only the webhook's changes, no round-trip noise")
}

func TestMutatePreviewFromStdin(t *testing.T) {
	in, err := os.ReadFile(fixtures + "executor-worker.pod.yaml")
	require.NoError(t, err)
	out, _, err := runCLI(t, string(in), "mutate", "-f", "-")
	require.NoError(t, err)
	pod := decodePod(t, out)
	require.Equal(t, []corev1.LocalObjectReference{{Name: "team-registry"}, {Name: "registry-credentials"}}, pod.Spec.ImagePullSecrets)
}

func TestMutatePreviewUnchanged(t *testing.T) {
	tests := map[string]struct {
		file, reason string
		args         []string
	}{
		"non-task pod":            {file: "non-task.pod.yaml", reason: "not a task pod"},
		"opted-out pod":           {file: "opted-out.pod.yaml", reason: "opted out"},
		"namespace labels not in": {file: "kpo-minimal.pod.yaml", reason: "namespace not opted in", args: []string{"--namespace-labels", "team=web"}},
		"namespace labels empty":  {file: "kpo-minimal.pod.yaml", reason: "namespace not opted in", args: []string{"--namespace-labels", ""}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(fixtures + tc.file)
			require.NoError(t, err)
			out, msg, err := runCLI(t, "", append([]string{"mutate", "-f", fixtures + tc.file}, tc.args...)...)
			require.NoError(t, err)
			require.Contains(t, msg, tc.reason)
			var want, got corev1.Pod
			require.NoError(t, yaml.Unmarshal(in, &want))
			require.NoError(t, yaml.Unmarshal([]byte(out), &got))
			require.Equal(t, want, got)
		})
	}
}

func TestMutatePreviewNamespaceLabelsOptIn(t *testing.T) {
	out, _, err := runCLI(t, "", "mutate", "-f", fixtures+"kpo-minimal.pod.yaml", "--namespace-labels", "taskpod.io/inject=enabled,team=data")
	require.NoError(t, err)
	require.NotEmpty(t, decodePod(t, out).Spec.ImagePullSecrets)
}

func TestMutatePreviewWithConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("imagePullSecrets: [{name: other-registry}]\nresources: {defaults: {limits: {cpu: 4}}}\n"), 0o600))
	out, _, err := runCLI(t, "", "mutate", "--config", cfg, "-f", fixtures+"kpo-minimal.pod.yaml")
	require.NoError(t, err)
	pod := decodePod(t, out)
	require.Equal(t, "other-registry", pod.Spec.ImagePullSecrets[0].Name)
	require.Equal(t, "4", pod.Spec.Containers[0].Resources.Limits.Cpu().String())
}

func TestCLIErrors(t *testing.T) {
	badCfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(badCfg, []byte("resources: {defaults: {limits: {cpu: lots}}}\n"), 0o600))
	notPod := filepath.Join(t.TempDir(), "svc.yaml")
	require.NoError(t, os.WriteFile(notPod, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"), 0o600))
	tests := map[string]struct {
		args []string
		want string
	}{
		"no command":       {want: "no command given"},
		"unknown command":  {args: []string{"mutat"}, want: `unknown command "mutat"`},
		"mutate without f": {args: []string{"mutate"}, want: "-f is required"},
		"missing file":     {args: []string{"mutate", "-f", "/nonexistent.yaml"}, want: "no such file"},
		"not a pod":        {args: []string{"mutate", "-f", notPod}, want: `has kind "Service", want Pod`},
		"bad config":       {args: []string{"mutate", "--config", badCfg, "-f", fixtures + "kpo-minimal.pod.yaml"}, want: `resources.defaults.limits.cpu: "lots" is not a quantity`},
		"bad labels":       {args: []string{"mutate", "-f", fixtures + "kpo-minimal.pod.yaml", "--namespace-labels", "novalue"}, want: `"novalue" is not key=value`},
		"serve bad config": {args: []string{"serve", "--config", badCfg}, want: `resources.defaults.limits.cpu`},
		"serve extra args": {args: []string{"serve", "now"}, want: "unexpected arguments"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := runCLI(t, "", tc.args...)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCLI(t, "", "version")
	require.NoError(t, err)
	require.Equal(t, "dev\n", out)
}

func TestMutatePreviewWithLimitRanges(t *testing.T) {
	lr := filepath.Join(t.TempDir(), "lr.yaml")
	require.NoError(t, os.WriteFile(lr, []byte(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: LimitRange
  metadata: {name: limits}
  spec:
    limits:
    - type: Container
      max: {cpu: 500m}
      maxLimitRequestRatio: {memory: "2"}
`), 0o600))
	out, _, err := runCLI(t, "", "mutate", "-f", fixtures+"kpo-minimal.pod.yaml", "--limit-ranges", lr)
	require.NoError(t, err)
	r := decodePod(t, out).Spec.Containers[0].Resources
	require.Equal(t, "500m", r.Limits.Cpu().String())
	require.Equal(t, "256Mi", r.Limits.Memory().String())

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o600))
	_, _, err = runCLI(t, "", "mutate", "-f", fixtures+"kpo-minimal.pod.yaml", "--limit-ranges", bad)
	require.ErrorContains(t, err, `kind "ConfigMap", want LimitRange or List`)
}
