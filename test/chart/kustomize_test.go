package chart

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate config/ from the chart's defaults")

const configDir = "../../config"

// kustomizeLayout says which config/ folder and file each kind goes to, in kubebuilder's shape.
var kustomizeLayout = map[string][2]string{
	"Deployment":                   {"manager", "manager.yaml"},
	"PodDisruptionBudget":          {"manager", "manager.yaml"},
	"ConfigMap":                    {"manager", "config.yaml"},
	"ServiceAccount":               {"rbac", "service_account.yaml"},
	"ClusterRole":                  {"rbac", "role.yaml"},
	"ClusterRoleBinding":           {"rbac", "role_binding.yaml"},
	"Role":                         {"rbac", "leader_election_role.yaml"},
	"RoleBinding":                  {"rbac", "leader_election_role_binding.yaml"},
	"MutatingWebhookConfiguration": {"webhook", "manifests.yaml"},
	"Service":                      {"webhook", "service.yaml"},
	"Issuer":                       {"certmanager", "certificate.yaml"},
	"Certificate":                  {"certmanager", "certificate.yaml"},
}

const generatedHeader = "# Generated from charts/taskpod-webhook with its default values by `make manifests`.\n# Edit the chart, then regenerate; a test keeps the two equal.\n"

// normalize drops what only Helm adds, and passes the object through JSON so that numbers
// have one type whichever decoder read them.
func normalize(obj map[string]any) map[string]any {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	obj = map[string]any{}
	if err := json.Unmarshal(b, &obj); err != nil {
		panic(err)
	}
	meta, _ := obj["metadata"].(map[string]any)
	if labels, ok := meta["labels"].(map[string]any); ok {
		delete(labels, "helm.sh/chart")
		delete(labels, "app.kubernetes.io/managed-by")
	}
	return obj
}

func key(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	return obj["kind"].(string) + "/" + meta["name"].(string)
}

// TestKustomizeMatchesChart renders config/default with kustomize's own engine (what `kubectl
// kustomize config/default` runs) and requires it to equal the chart's defaults, object by
// object, plus the Namespace that kustomize users expect. -update regenerates config/.
func TestKustomizeMatchesChart(t *testing.T) {
	r := mustRender(t, "")
	if *update {
		writeKustomize(t, r)
	}
	want := map[string]map[string]any{}
	for _, o := range r.objects {
		want[key(o.Object)] = normalize(o.DeepCopy().Object)
	}

	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(configDir, "default"))
	require.NoError(t, err)
	got := map[string]map[string]any{}
	for _, rsc := range res.Resources() {
		m, err := rsc.Map()
		require.NoError(t, err)
		got[key(m)] = normalize(m)
	}
	require.Contains(t, got, "Namespace/"+namespace)
	delete(got, "Namespace/"+namespace)
	require.Equal(t, sortedKeys(want), sortedKeys(got), "same objects")
	for k := range want {
		require.Equal(t, want[k], got[k], "%s differs; run `make manifests`", k)
	}
}

func sortedKeys(m map[string]map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func writeKustomize(t *testing.T, r *rendered) {
	t.Helper()
	files := map[string][]string{} // dir/file → documents
	dirs := map[string][]string{}  // dir → files
	for _, o := range r.objects {
		place, ok := kustomizeLayout[o.GetKind()]
		require.True(t, ok, "no place in config/ for %s", o.GetKind())
		obj := o.DeepCopy()
		labels := obj.GetLabels()
		delete(labels, "helm.sh/chart")
		labels["app.kubernetes.io/managed-by"] = "kustomize"
		obj.SetLabels(labels)
		b, err := yaml.Marshal(obj.Object)
		require.NoError(t, err)
		path := filepath.Join(place[0], place[1])
		if _, seen := files[path]; !seen {
			dirs[place[0]] = append(dirs[place[0]], place[1])
		}
		files[path] = append(files[path], string(b))
	}
	files["manager/namespace.yaml"] = []string{"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + namespace + "\n  labels:\n    app.kubernetes.io/name: taskpod-webhook\n"}
	dirs["manager"] = append(dirs["manager"], "namespace.yaml")
	for dir, names := range dirs {
		sort.Strings(names)
		files[filepath.Join(dir, "kustomization.yaml")] = []string{"resources:\n- " + strings.Join(names, "\n- ") + "\n"}
	}
	files["default/kustomization.yaml"] = []string{"# The chart's defaults, installed with `kubectl apply -k config/default`.\nnamespace: " + namespace +
		"\nresources:\n- ../manager\n- ../rbac\n- ../webhook\n- ../certmanager\n"}
	require.NoError(t, os.RemoveAll(configDir))
	for path, docs := range files {
		full := filepath.Join(configDir, path)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(generatedHeader+strings.Join(docs, "---\n")), 0o644))
	}
}
