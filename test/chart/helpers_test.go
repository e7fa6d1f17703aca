// Package chart tests the Helm chart: rendering, schema, and installation on a real API server
// with cert-manager's real issuing and CA-injection code.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/taskpod/taskpod-webhook/test/harness"
)

const (
	chartDir  = "../../charts/taskpod-webhook"
	release   = "taskpod-webhook"
	namespace = "taskpod-system"
	fullname  = "taskpod-webhook" // the release name contains the chart name
)

func helmBin(t testing.TB) string {
	t.Helper()
	bin, err := harness.BinDir()
	require.NoError(t, err)
	helm := filepath.Join(bin, "helm")
	_, err = os.Stat(helm)
	require.NoError(t, err, "helm is built by `make tools`")
	return helm
}

func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errOut.String())
	}
	return out.String(), nil
}

// rendered is the output of helm template, by kind and name.
type rendered struct {
	objects []*unstructured.Unstructured
	raw     string
}

func (r *rendered) get(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := r.find(kind, name)
	require.NotNil(t, o, "%s %s not rendered; have %v", kind, name, r.names())
	return o
}

func (r *rendered) find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func (r *rendered) has(kind string) bool {
	for _, o := range r.objects {
		if o.GetKind() == kind {
			return true
		}
	}
	return false
}

func (r *rendered) names() []string {
	var n []string
	for _, o := range r.objects {
		n = append(n, o.GetKind()+"/"+o.GetName())
	}
	return n
}

// typed converts a rendered object into a typed one.
func typed[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out))
	return &out
}

// render runs helm template with the values given as YAML.
func render(t testing.TB, values string, extra ...string) (*rendered, error) {
	t.Helper()
	return renderAs(t, release, namespace, values, extra...)
}

// renderAs renders another release, so that several installs can share one API server.
func renderAs(t testing.TB, release, namespace, values string, extra ...string) (*rendered, error) {
	t.Helper()
	// Not t.TempDir(): helm splits -f on commas, and test names may contain them.
	dir, err := os.MkdirTemp("", "chart-values-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	f := filepath.Join(dir, "values.yaml")
	require.NoError(t, os.WriteFile(f, []byte(values), 0o600))
	args := append([]string{"template", release, chartDir, "--namespace", namespace, "-f", f}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	r := &rendered{raw: out}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); err != nil {
			break
		}
		if len(o.Object) > 0 {
			r.objects = append(r.objects, &o)
		}
	}
	return r, nil
}

func mustRender(t testing.TB, values string, extra ...string) *rendered {
	t.Helper()
	r, err := render(t, values, extra...)
	require.NoError(t, err)
	return r
}
