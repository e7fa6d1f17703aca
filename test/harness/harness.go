// Package harness runs the webhook against a real kube-apiserver and etcd, built from Go modules
// into bin/ by `make tools`. The integration tests and `make demo` share it.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
	"github.com/taskpod/taskpod-webhook/webhook/app"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/registration"
)

// ControlPlane is a running kube-apiserver + etcd and the serving certificate the API server
// trusts for webhooks on this machine.
type ControlPlane struct {
	env     *envtest.Environment
	Config  *rest.Config
	Client  client.Client
	Webhook envtest.WebhookInstallOptions // host, port, cert dir and CA of the local webhook
}

// BinDir finds the kube-apiserver and etcd binaries: $KUBEBUILDER_ASSETS, else bin/ at the root
// of the repository containing the working directory.
func BinDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "test", "tools")); err == nil {
				bin := filepath.Join(dir, "bin")
				for _, b := range []string{"kube-apiserver", "etcd"} {
					if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
						return "", fmt.Errorf("%s is missing: run `make tools` (or `make test`) to build it from Go modules", filepath.Join(bin, b))
					}
				}
				return bin, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found; set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd")
		}
		dir = parent
	}
}

// Start starts kube-apiserver and etcd, and installs the CRDs found in crdDirs.
func Start(crdDirs ...string) (*ControlPlane, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"},
		CRDDirectoryPaths:        crdDirs,
		ErrorIfCRDPathMissing:    len(crdDirs) > 0,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", bin, err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return &ControlPlane{env: env, Config: cfg, Client: c, Webhook: env.WebhookInstallOptions}, nil
}

// WriteKubeconfig provisions an admin user called name and writes its kubeconfig into dir,
// for a process of its own (the real binary, cert-manager); it returns the file's path.
func (cp *ControlPlane) WriteKubeconfig(dir, name string) (string, error) {
	user, err := cp.env.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// Stop stops the control plane and removes its files.
func (cp *ControlPlane) Stop() error { return cp.env.Stop() }

// WebhookURL is where the API server reaches the locally running webhook.
func (cp *ControlPlane) WebhookURL() string {
	return fmt.Sprintf("https://%s:%d%s", cp.Webhook.LocalServingHost, cp.Webhook.LocalServingPort, admission.Path)
}

// ServingCertDir holds tls.crt and tls.key for the local webhook, signed by the CA the
// configuration's caBundle carries.
func (cp *ControlPlane) ServingCertDir() string { return cp.Webhook.LocalServingCertDir }

// WebhookOptions are the registration options for the local webhook: URL and CA as in tests, the
// rest as the chart renders them.
func (cp *ControlPlane) WebhookOptions(ownNamespace string) registration.Options {
	return registration.Options{
		Name:              "taskpod-webhook",
		URL:               cp.WebhookURL(),
		CABundle:          cp.Webhook.LocalServingCAData,
		ExcludeNamespaces: []string{"kube-system", ownNamespace},
	}
}

// InstallWebhook creates (or replaces) the MutatingWebhookConfiguration for cfg.
func (cp *ControlPlane) InstallWebhook(ctx context.Context, cfg *config.Config, o registration.Options) error {
	want := registration.Mutating(cfg, o)
	var existing = want.DeepCopy()
	err := cp.Client.Get(ctx, client.ObjectKeyFromObject(want), existing)
	switch {
	case apierrors.IsNotFound(err):
		return cp.Client.Create(ctx, want)
	case err != nil:
		return err
	}
	want.ResourceVersion = existing.ResourceVersion
	return cp.Client.Update(ctx, want)
}

// Webhook is a running webhook manager.
type Webhook struct {
	Manager  manager.Manager
	Registry *prometheus.Registry
	Port     int
	stop     sync.Once
	cancel   context.CancelFunc
	done     chan error
}

// RunWebhook starts the webhook through app.New, the serve command's code path, on the local
// serving address, and returns once its server and caches are up. Options may be adjusted by
// mods, for example to run a second instance on another port.
func (cp *ControlPlane) RunWebhook(ctx context.Context, cfg *config.Config, log logr.Logger, mods ...func(*app.Options)) (*Webhook, error) {
	return cp.RunWebhookAs(ctx, cp.Config, cfg, log, mods...)
}

// RunWebhookAs is RunWebhook with another identity, such as an impersonated ServiceAccount.
func (cp *ControlPlane) RunWebhookAs(ctx context.Context, restConfig *rest.Config, cfg *config.Config, log logr.Logger, mods ...func(*app.Options)) (*Webhook, error) {
	o := app.DefaultOptions()
	o.MetricsBindAddress = "0"
	o.HealthProbeBindAddress = "0"
	o.WebhookHost = cp.Webhook.LocalServingHost
	o.WebhookPort = cp.Webhook.LocalServingPort
	o.WebhookCertDir = cp.ServingCertDir()
	o.GracefulShutdown = 5 * time.Second
	o.Logger = log
	reg := prometheus.NewRegistry()
	o.MetricsRegistry = reg
	o.SeveralInProcess = true
	for _, m := range mods {
		m(&o)
	}

	ctx, cancel := context.WithCancel(ctx)
	mgr, err := app.New(ctx, restConfig, cfg, o)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &Webhook{Manager: mgr, Registry: reg, Port: o.WebhookPort, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- mgr.Start(ctx) }()

	started := mgr.GetWebhookServer().StartedChecker()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-w.done:
			return false, fmt.Errorf("manager stopped: %w", err)
		default:
		}
		return started(nil) == nil && mgr.GetCache().WaitForCacheSync(ctx), nil
	})
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("waiting for the webhook to start: %w", err)
	}
	return w, nil
}

// URL is where this instance serves admission reviews.
func (w *Webhook) URL() string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", w.Port, admission.Path)
}

// FreePort returns a TCP port on loopback that nothing listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the webhook down and waits for it. Calling it again does nothing.
func (w *Webhook) Stop() {
	w.stop.Do(func() {
		w.cancel()
		<-w.done
	})
}

// CreateNamespace creates a namespace with labels and its default ServiceAccount, which the
// ServiceAccount admission plugin requires before pods can be created (no controller-manager
// runs here to create it).
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := cp.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if err := cp.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account in %s: %w", name, err)
	}
	return nil
}

// WaitUntilCalled creates dry-run task pods in namespace until the API server answers with one
// the webhook mutated: the webhook configuration reaches the API server's admission plugin
// asynchronously, and with failurePolicy Ignore an early pod would pass unmutated.
func (cp *ControlPlane) WaitUntilCalled(ctx context.Context, namespace string, taskPodLabels map[string]string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: namespace, Labels: taskPodLabels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Image: "probe"}}},
		}
		if err := cp.Client.Create(ctx, pod, client.DryRunAll); err != nil {
			return false, nil // not wired up yet (or the API server is still starting): try again
		}
		return pod.Annotations["taskpod.io/mutated"] != "", nil
	})
}
