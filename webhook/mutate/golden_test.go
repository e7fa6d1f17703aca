package mutate_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden runs each realistic pod in testdata/*.pod.yaml through the default policy in an
// opted-in namespace and compares the result with *.golden.yaml beside it.
func TestGolden(t *testing.T) {
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	policy := cfg.Policy()
	optedIn := map[string]string{config.DefaultOptInLabel: config.DefaultOptInValue}

	inputs, err := filepath.Glob("testdata/*.pod.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".pod.yaml")
		t.Run(name, func(t *testing.T) {
			pod := readPod(t, in)
			if policy.Decide(pod, optedIn).Mutate {
				mutate.Pod(pod, policy, mutate.Bounds{})
			}
			got, err := yaml.Marshal(pod)
			require.NoError(t, err)

			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./webhook/mutate -update to create the golden file")
			require.Equal(t, string(want), string(got))

			// Idempotent: the output goes through unchanged.
			again := pod.DeepCopy()
			if policy.Decide(again, optedIn).Mutate {
				require.Empty(t, mutate.Pod(again, policy, mutate.Bounds{}))
			}
			require.Equal(t, pod, again)
			requireValidResources(t, pod)
		})
	}
}

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var pod corev1.Pod
	require.NoError(t, yaml.UnmarshalStrict(b, &pod))
	return &pod
}

// requireValidResources asserts that no container requests more than its limit.
func requireValidResources(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for name, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[name]; ok {
				require.LessOrEqual(t, req.Cmp(lim), 0, "container %s: %s request %s above limit %s", c.Name, name, req.String(), lim.String())
			}
		}
	}
}
