package chart

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/registration"
)

func TestLint(t *testing.T) {
	out, err := helm(t, "lint", "--strict", chartDir)
	require.NoError(t, err, out)
	out, err = helm(t, "lint", "--strict", chartDir, "--set", "certManager.enabled=false,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true")
	require.NoError(t, err, out)
}

// renderedConfig is the config file the chart gives the binary, parsed by the binary's own code.
func renderedConfig(t *testing.T, r *rendered) *config.Config {
	t.Helper()
	var cm *corev1.ConfigMap
	for _, o := range r.objects {
		if o.GetKind() == "ConfigMap" {
			cm = typed[corev1.ConfigMap](t, o)
		}
	}
	require.NotNil(t, cm, "no ConfigMap rendered")
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	require.NoError(t, err, "the binary must accept the rendered config:\n%s", cm.Data["config.yaml"])
	return cfg
}

// requireInvariants holds for every permutation: the config is valid, the webhook configuration
// is exactly what webhook/registration builds from that config (CEL included), and the pods
// are hardened.
func requireInvariants(t *testing.T, r *rendered, exclude ...string) {
	t.Helper()
	cfg := renderedConfig(t, r)
	mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, r.get(t, "MutatingWebhookConfiguration", fullname))
	require.Len(t, mwc.Webhooks, 1)
	got := mwc.Webhooks[0]
	want := registration.Mutating(cfg, registration.Options{
		Name: fullname, ServiceNamespace: namespace, ServiceName: fullname,
		ExcludeNamespaces: append([]string{"kube-system", namespace}, exclude...),
		FailurePolicy:     *got.FailurePolicy, TimeoutSeconds: *got.TimeoutSeconds,
	}).Webhooks[0]
	want.ClientConfig.CABundle = got.ClientConfig.CABundle
	require.Equal(t, want, got, "the chart's webhook must equal the one built in Go from the same config")
	require.LessOrEqual(t, *got.TimeoutSeconds, int32(30))

	dep := typed[appsv1.Deployment](t, r.get(t, "Deployment", fullname))
	pod := dep.Spec.Template.Spec
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
	c := pod.Containers[0]
	require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.ReadinessProbe)
	require.NotEmpty(t, c.Resources.Requests)
	require.Regexp(t, "^[0-9a-f]{64}$", dep.Spec.Template.Annotations["checksum/config"])
	require.Contains(t, c.Args, "--config=/etc/taskpod-webhook/config.yaml")
	for _, o := range r.objects {
		require.Equal(t, "taskpod-webhook", o.GetLabels()["app.kubernetes.io/name"], "%s/%s", o.GetKind(), o.GetName())
		require.Equal(t, release, o.GetLabels()["app.kubernetes.io/instance"], "%s/%s", o.GetKind(), o.GetName())
	}
}

func secretRules(t *testing.T, r *rendered) []rbacv1.PolicyRule {
	t.Helper()
	role := typed[rbacv1.ClusterRole](t, r.get(t, "ClusterRole", fullname))
	var rules []rbacv1.PolicyRule
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") {
			rules = append(rules, rule)
		}
	}
	return rules
}

func TestTemplatePermutations(t *testing.T) {
	tests := map[string]struct {
		values  string
		exclude []string
		check   func(t *testing.T, r *rendered)
	}{
		"defaults": {
			check: func(t *testing.T, r *rendered) {
				mwc := r.get(t, "MutatingWebhookConfiguration", fullname)
				require.Equal(t, namespace+"/"+fullname, mwc.GetAnnotations()["cert-manager.io/inject-ca-from"])
				cert := r.get(t, "Certificate", fullname)
				dns, _, _ := unstructuredSlice(cert.Object, "spec", "dnsNames")
				require.Equal(t, []any{fullname + "." + namespace + ".svc", fullname + "." + namespace + ".svc.cluster.local"}, dns)
				r.get(t, "Issuer", fullname+"-selfsigned")
				require.False(t, r.has("Secret"), "cert-manager writes the serving Secret")
				require.Empty(t, secretRules(t, r), "no Secret access when nothing is synced")
				dep := typed[appsv1.Deployment](t, r.get(t, "Deployment", fullname))
				require.Equal(t, int32(2), *dep.Spec.Replicas)
				require.NotNil(t, dep.Spec.Template.Spec.Affinity.PodAntiAffinity)
				pdb := r.get(t, "PodDisruptionBudget", fullname)
				require.EqualValues(t, 1, pdb.Object["spec"].(map[string]any)["minAvailable"])
				r.get(t, "Role", fullname+"-leader-election")
				require.False(t, r.has("ServiceMonitor") || r.has("NetworkPolicy"))
			},
		},
		"no cert-manager": {
			values: "certManager: {enabled: false}\n",
			check: func(t *testing.T, r *rendered) {
				require.False(t, r.has("Certificate") || r.has("Issuer"))
				mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, r.get(t, "MutatingWebhookConfiguration", fullname))
				require.NotContains(t, mwc.Annotations, "cert-manager.io/inject-ca-from")
				sec := typed[corev1.Secret](t, r.get(t, "Secret", fullname+"-tls"))
				require.Equal(t, sec.Data["ca.crt"], mwc.Webhooks[0].ClientConfig.CABundle)
				verifyServingCert(t, sec.Data["ca.crt"], sec.Data["tls.crt"], fullname+"."+namespace+".svc")
			},
		},
		"custom selectors": {
			values: `
config:
  taskPods:
    selectors:
    - matchLabels: {kubernetes-pod-operator: "True"}
    - matchExpressions:
      - {key: dag_id, operator: Exists}
      - {key: tier, operator: NotIn, values: [web, api]}
  namespaces:
    selector:
      matchLabels: {team: data}
      matchExpressions: [{key: env, operator: In, values: [prod, staging]}]
webhook: {excludeNamespaces: [monitoring]}
`,
			exclude: []string{"monitoring"},
		},
		"several synced secrets": {
			values: `
config:
  imagePullSecrets:
  - name: registry-credentials
    source: {name: registry-credentials}
  - name: second-registry
    source: {namespace: shared, name: other}
  - name: unsynced
  secretSync: {onOptOut: retain}
`,
			check: func(t *testing.T, r *rendered) {
				cfg := renderedConfig(t, r)
				synced := cfg.SyncedSecrets()
				require.Len(t, synced, 2)
				require.Equal(t, namespace+"/registry-credentials", synced[0].Source.String(), "an empty source namespace is the release namespace")
				require.Equal(t, "shared/other", synced[1].Source.String())
				require.Equal(t, config.OptOutRetain, cfg.SecretSync.OnOptOut)
				rules := secretRules(t, r)
				require.Len(t, rules, 1)
				require.ElementsMatch(t, []string{"get", "list", "watch", "create", "update", "delete"}, rules[0].Verbs)
				mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, r.get(t, "MutatingWebhookConfiguration", fullname))
				require.Equal(t, admissionregistrationv1.SideEffectClassNoneOnDryRun, *mwc.Webhooks[0].SideEffects)
			},
		},
		"own namespace selector replaces the default": {
			values: "config: {namespaces: {selector: {matchLabels: {team: data}}}}\n",
			check: func(t *testing.T, r *rendered) {
				cfg := renderedConfig(t, r)
				require.Equal(t, map[string]string{"team": "data"}, cfg.Namespaces.Selector.MatchLabels, "Helm must not merge the default label into it")
			},
		},
		"Fail policy": {
			values: "webhook: {failurePolicy: Fail, timeoutSeconds: 3}\n",
			check: func(t *testing.T, r *rendered) {
				mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, r.get(t, "MutatingWebhookConfiguration", fullname))
				require.Equal(t, admissionregistrationv1.Fail, *mwc.Webhooks[0].FailurePolicy)
				require.Equal(t, int32(3), *mwc.Webhooks[0].TimeoutSeconds)
			},
		},
		"metrics, ServiceMonitor and NetworkPolicy": {
			values: `
metrics: {enabled: true, port: 9090, serviceMonitor: {enabled: true, labels: {release: prom}}}
networkPolicy: {enabled: true, metricsFrom: [{namespaceSelector: {matchLabels: {name: monitoring}}}]}
`,
			check: func(t *testing.T, r *rendered) {
				sm := r.get(t, "ServiceMonitor", fullname)
				require.Equal(t, "prom", sm.GetLabels()["release"])
				np := r.get(t, "NetworkPolicy", fullname)
				ingress, _, _ := unstructuredSlice(np.Object, "spec", "ingress")
				require.Len(t, ingress, 2)
				svc := typed[corev1.Service](t, r.get(t, "Service", fullname))
				require.Equal(t, int32(9090), svc.Spec.Ports[1].Port)
				dep := typed[appsv1.Deployment](t, r.get(t, "Deployment", fullname))
				require.Contains(t, dep.Spec.Template.Spec.Containers[0].Args, "--metrics-bind-address=:9090")
			},
		},
		"metrics off": {
			values: "metrics: {enabled: false}\n",
			check: func(t *testing.T, r *rendered) {
				dep := typed[appsv1.Deployment](t, r.get(t, "Deployment", fullname))
				require.Contains(t, dep.Spec.Template.Spec.Containers[0].Args, "--metrics-bind-address=0")
				svc := typed[corev1.Service](t, r.get(t, "Service", fullname))
				require.Len(t, svc.Spec.Ports, 1)
			},
		},
		"own issuer": {
			values: "certManager: {issuerRef: {name: corp-ca, kind: ClusterIssuer, group: cert-manager.io}}\n",
			check: func(t *testing.T, r *rendered) {
				require.False(t, r.has("Issuer"))
				ref, _, _ := unstructuredMap(r.get(t, "Certificate", fullname).Object, "spec", "issuerRef")
				require.Equal(t, map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, ref)
			},
		},
		"single replica without leader election": {
			values: "replicaCount: 1\nleaderElection: {enabled: false}\npodDisruptionBudget: {enabled: false}\n",
			check: func(t *testing.T, r *rendered) {
				require.False(t, r.has("Role") || r.has("PodDisruptionBudget"))
				dep := typed[appsv1.Deployment](t, r.get(t, "Deployment", fullname))
				require.Contains(t, dep.Spec.Template.Spec.Containers[0].Args, "--leader-elect=false")
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			requireInvariants(t, r, tc.exclude...)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestConfigChangeRollsThePods(t *testing.T) {
	checksum := func(values string) string {
		dep := typed[appsv1.Deployment](t, mustRender(t, values).get(t, "Deployment", fullname))
		return dep.Spec.Template.Annotations["checksum/config"]
	}
	base := checksum("")
	require.Equal(t, base, checksum(""), "stable for the same values")
	require.NotEqual(t, base, checksum("config: {resources: {defaults: {limits: {cpu: 2}}}}\n"))
	require.Equal(t, base, checksum("replicaCount: 3\n"), "values outside the config do not roll")
}

func TestSchemaRejectsBadValues(t *testing.T) {
	tests := map[string]struct{ values, want string }{
		"unknown top-level key":   {"replicas: 3\n", "additional properties 'replicas' not allowed"},
		"unknown nested key":      {"webhook: {failurePolicyy: Fail}\n", "at '/webhook': additional properties 'failurePolicyy' not allowed"},
		"typo in config":          {"config: {resources: {defaults: {request: {cpu: 1}}}}\n", "at '/config/resources/defaults': additional properties 'request' not allowed"},
		"wrong type":              {"webhook: {timeoutSeconds: soon}\n", "at '/webhook/timeoutSeconds': got string, want integer"},
		"bad failurePolicy":       {"webhook: {failurePolicy: Never}\n", "at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'"},
		"bad onOptOut":            {"config: {secretSync: {onOptOut: keep}}\n", "at '/config/secretSync/onOptOut': value must be one of 'delete', 'retain'"},
		"bad quantity":            {"config: {resources: {defaults: {limits: {memory: 1GB}}}}\n", "at '/config/resources/defaults/limits/memory'"},
		"bad duration":            {"config: {secretSync: {resyncPeriod: often}}\n", "at '/config/secretSync/resyncPeriod'"},
		"timeout too long":        {"webhook: {timeoutSeconds: 60}\n", "at '/webhook/timeoutSeconds'"},
		"bad selector operator":   {"config: {taskPods: {selectors: [{matchExpressions: [{key: a, operator: Equals}]}]}}\n", "operator"},
		"empty task-pod selector": {"config: {taskPods: {selectors: [{}]}}\n", "at '/config/taskPods/selectors/0'"},
		"bad secret name":         {"config: {imagePullSecrets: [{name: Bad_Name}]}\n", "at '/config/imagePullSecrets/0/name'"},
		"source without name":     {"config: {imagePullSecrets: [{name: a, source: {namespace: x}}]}\n", "at '/config/imagePullSecrets/0/source': missing property 'name'"},
		"bad log level":           {"logLevel: verbose\n", "at '/logLevel'"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, tc.values)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func verifyServingCert(t *testing.T, caPEM, certPEM []byte, dnsName string) {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM), "ca.crt is PEM")
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block, "tls.crt is PEM")
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err)
}

func unstructuredSlice(obj map[string]any, path ...string) ([]any, bool, error) {
	v := walk(obj, path...)
	s, ok := v.([]any)
	return s, ok, nil
}

func unstructuredMap(obj map[string]any, path ...string) (map[string]any, bool, error) {
	v := walk(obj, path...)
	m, ok := v.(map[string]any)
	return m, ok, nil
}

func walk(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestEveryValueIsDocumented keeps the chart README's table complete: every value in
// values.yaml, down to the level the table documents, has a row.
func TestEveryValueIsDocumented(t *testing.T) {
	readme, err := os.ReadFile(chartDir + "/README.md")
	require.NoError(t, err)
	raw, err := os.ReadFile(chartDir + "/values.yaml")
	require.NoError(t, err)
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &values))
	// Maps whose entries are user data, documented as one row.
	leafMaps := map[string]bool{"config.taskPods": false, "config.resources.defaults.requests": true,
		"config.resources.defaults.limits": true, "config.namespaces.selector": true, "resources": true,
		"podAnnotations": true, "podLabels": true, "nodeSelector": true, "affinity": true,
		"metrics.serviceMonitor.labels": true, "serviceAccount.annotations": true, "certManager.issuerRef": true}
	var walkValues func(prefix string, v any)
	walkValues = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && !leafMaps[prefix] {
			for k, child := range m {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walkValues(p, child)
			}
			return
		}
		require.Contains(t, string(readme), "| `"+prefix+"` |", "value %s is not in the chart README's table", prefix)
	}
	walkValues("", values)
}
