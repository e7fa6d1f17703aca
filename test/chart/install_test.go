package chart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/taskpod/taskpod-webhook/test/harness"
	"github.com/taskpod/taskpod-webhook/webhook/app"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

const (
	wait = 60 * time.Second
	tick = 100 * time.Millisecond
)

var kpoLabels = map[string]string{"kubernetes_pod_operator": "True", "dag_id": "etl", "task_id": "load"}

var releases atomic.Int32

// uniqueRelease returns a release name (containing the chart name, so it is also the full name
// of its objects) that no other test in this process uses, so the suite can run again (-count).
func uniqueRelease(base string) string {
	return fmt.Sprintf("taskpod-webhook-%s%d", base, releases.Add(1))
}

// install renders a release with values and server-side applies every object, as an admin
// would with `helm template | kubectl apply --server-side`. Every object must be accepted. The
// objects are deleted when the test ends: a leftover webhook configuration would intercept
// other tests' pods.
func install(t *testing.T, cp *harness.ControlPlane, rel, ns, values string) *rendered {
	t.Helper()
	ctx := context.Background()
	r, err := renderAs(t, rel, ns, values)
	require.NoError(t, err)
	require.NoError(t, cp.CreateNamespace(ctx, ns, nil))
	for _, o := range r.objects {
		obj := o.DeepCopy()
		err := cp.Client.Patch(ctx, obj, client.Apply, client.FieldOwner("chart-test"), client.ForceOwnership)
		require.NoError(t, err, "server-side apply of %s/%s", o.GetKind(), o.GetName())
		t.Cleanup(func() { _ = cp.Client.Delete(ctx, o.DeepCopy()) })
	}
	return r
}

// startCertManager runs cert-manager's issuing controllers and its cainjector.
func startCertManager(t *testing.T, cp *harness.ControlPlane) {
	t.Helper()
	bin, err := harness.BinDir()
	require.NoError(t, err)
	kc, err := cp.WriteKubeconfig(t.TempDir(), "cert-manager")
	require.NoError(t, err)
	for _, mode := range []string{"controller", "cainjector"} {
		cmd := exec.Command(filepath.Join(bin, "cert-manager"), mode, "--kubeconfig", kc)
		logFile, err := os.Create(filepath.Join(t.TempDir(), mode+".log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		require.NoError(t, cmd.Start(), "bin/cert-manager is built by `make tools`")
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(logFile.Name())
				t.Logf("cert-manager %s log (tail):\n%s", mode, tail(b, 3000))
			}
		})
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// servingCertDir writes the serving Secret's certificate and key where the webhook reads them.
func servingCertDir(t *testing.T, s *corev1.Secret) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), s.Data["tls.crt"], 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), s.Data["tls.key"], 0o600))
	return dir
}

// proveTLS runs the webhook with the given serving Secret, points the release's webhook
// configuration at it by URL (no kubelet runs here) while keeping its caBundle, and shows that
// the API server calls it: a task pod comes back mutated. With failurePolicy Ignore a TLS
// failure would let the pod through unmutated, so the mutation is the proof.
func proveTLS(t *testing.T, cp *harness.ControlPlane, r *rendered, rel, ns string, serving *corev1.Secret, wantCA []byte) {
	t.Helper()
	ctx := context.Background()
	cfg := renderedConfig(t, r)
	port, err := harness.FreePort()
	require.NoError(t, err)
	w, err := cp.RunWebhook(ctx, cfg, logr.Discard(), func(o *app.Options) {
		o.WebhookPort, o.WebhookCertDir = port, servingCertDir(t, serving)
		o.ExcludeNamespaces = append(o.ExcludeNamespaces, ns)
		o.SeveralInProcess = true
	})
	require.NoError(t, err)
	t.Cleanup(w.Stop)

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKey{Name: rel}, &mwc))
	require.Equal(t, wantCA, mwc.Webhooks[0].ClientConfig.CABundle)
	url := fmt.Sprintf("https://localhost:%d/mutate-v1-pod", port)
	mwc.Webhooks[0].ClientConfig.Service = nil
	mwc.Webhooks[0].ClientConfig.URL = &url
	require.NoError(t, cp.Client.Update(ctx, &mwc))
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, &mwc) })

	tasks := rel + "-tasks"
	require.NoError(t, cp.CreateNamespace(ctx, tasks, map[string]string{"taskpod.io/inject": "enabled"}))
	require.NoError(t, cp.WaitUntilCalled(ctx, tasks, kpoLabels), "the API server never reached the webhook over TLS")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "etl-load-", Namespace: tasks, Labels: kpoLabels},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "base", Image: "etl:1"}}},
	}
	require.NoError(t, cp.Client.Create(ctx, pod))
	var stored corev1.Pod
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored))
	require.Equal(t, "imagePullSecrets,resources", stored.Annotations[mutate.MutatedAnnotation])
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, stored.Spec.ImagePullSecrets)
}

func TestInstallWithCertManager(t *testing.T) {
	ctx := context.Background()
	rel := uniqueRelease("cm")
	ns := rel
	startCertManager(t, controlPlane)
	r := install(t, controlPlane, rel, ns, "tls: {extraDNSNames: [localhost]}\n")

	var serving corev1.Secret
	require.Eventually(t, func() bool {
		err := controlPlane.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: rel + "-tls"}, &serving)
		return err == nil && len(serving.Data["tls.crt"]) > 0 && len(serving.Data["ca.crt"]) > 0
	}, wait, tick, "cert-manager never issued the serving certificate from the chart's Issuer and Certificate")
	verifyServingCert(t, serving.Data["ca.crt"], serving.Data["tls.crt"], rel+"."+ns+".svc")

	require.Eventually(t, func() bool {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		err := controlPlane.Client.Get(ctx, client.ObjectKey{Name: rel}, &mwc)
		return err == nil && string(mwc.Webhooks[0].ClientConfig.CABundle) == string(serving.Data["ca.crt"])
	}, wait, tick, "cainjector never injected the CA into the chart's webhook configuration")

	proveTLS(t, controlPlane, r, rel, ns, &serving, serving.Data["ca.crt"])
}

func TestInstallWithoutCertManager(t *testing.T) {
	ctx := context.Background()
	rel := uniqueRelease("gen")
	ns := rel
	r := install(t, controlPlane, rel, ns, "certManager: {enabled: false}\ntls: {extraDNSNames: [localhost]}\n")
	var serving corev1.Secret
	require.NoError(t, controlPlane.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: rel + "-tls"}, &serving))
	proveTLS(t, controlPlane, r, rel, ns, &serving, serving.Data["ca.crt"])
}

func TestEveryObjectIsAccepted(t *testing.T) {
	// Permutations beyond the TLS proofs; the ServiceMonitor needs the Prometheus Operator's CRD,
	// which is not installed here, so it stays off.
	for i, values := range []string{
		"webhook: {failurePolicy: Fail}\nmetrics: {enabled: false}\n",
		"networkPolicy: {enabled: true, metricsFrom: [{podSelector: {}}]}\nconfig: {imagePullSecrets: [{name: a, source: {name: a}}, {name: b}]}\n",
		"certManager: {issuerRef: {name: corp, kind: ClusterIssuer}}\nreplicaCount: 1\nleaderElection: {enabled: false}\n",
	} {
		rel := uniqueRelease(fmt.Sprintf("p%d-", i))
		r := install(t, controlPlane, rel, rel, values)
		// Read every object back: stored, not just validated.
		for _, o := range r.objects {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			require.NoError(t, controlPlane.Client.Get(context.Background(), client.ObjectKeyFromObject(o), got))
		}
	}
}

// controlPlane is shared by the install tests; render tests do not need it.
var controlPlane *harness.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	crds := filepath.Join(must(harness.BinDir()), "cert-manager-crds")
	var err error
	controlPlane, err = harness.Start(crds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err, "(run `make tools`)")
		return 1
	}
	defer func() { _ = controlPlane.Stop() }()
	return m.Run()
}

func must(s string, err error) string {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return s
}
