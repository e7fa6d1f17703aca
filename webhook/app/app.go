// Package app wires the webhook into one controller-runtime manager. The binary's serve command,
// the integration tests and `make demo` all start the webhook through New, so they exercise the
// production code path.
package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/secretsync"
)

// Options are the process settings that are not policy: ports, certificates, leader election.
type Options struct {
	MetricsBindAddress     string // "0" disables the metrics endpoint
	HealthProbeBindAddress string // "0" disables the probes
	WebhookHost            string
	WebhookPort            int
	WebhookCertDir         string
	WebhookCertName        string
	WebhookKeyName         string
	EnableHTTP2            bool
	LeaderElection         bool
	LeaderElectionID       string
	LeaderElectionNS       string
	GracefulShutdown       time.Duration
	// ExcludeNamespaces are never mutated or synced into, whatever their labels: kube-system
	// and the webhook's own namespace.
	ExcludeNamespaces []string
	// KubeAPIQPS and KubeAPIBurst bound the client's request rate: a rotation writes one
	// Secret per opted-in namespace.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// SeveralInProcess allows more than one manager in a process (tests): controller-runtime
	// otherwise refuses a second controller of the same name, for the sake of its metrics.
	SeveralInProcess bool
	// MetricsRegistry receives the webhook's metrics; controller-runtime's global registry when nil.
	MetricsRegistry prometheus.Registerer
	Logger          logr.Logger
}

// DefaultOptions are the defaults the serve command's flags start from.
func DefaultOptions() Options {
	return Options{
		MetricsBindAddress:     ":8080",
		HealthProbeBindAddress: ":8081",
		WebhookPort:            9443,
		WebhookCertName:        "tls.crt",
		WebhookKeyName:         "tls.key",
		LeaderElectionID:       "taskpod-webhook.taskpod.io",
		GracefulShutdown:       30 * time.Second,
		ExcludeNamespaces:      []string{"kube-system"},
		KubeAPIQPS:             50,
		KubeAPIBurst:           100,
	}
}

// New builds the manager with the webhook registered and the caches it reads from.
func New(ctx context.Context, restConfig *rest.Config, cfg *config.Config, o Options) (manager.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
	if !o.EnableHTTP2 {
		// HTTP/2 stream multiplexing has had denial-of-service flaws (Rapid Reset); the API server
		// speaks HTTP/1.1 to webhooks just as well.
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	shutdown := o.GracefulShutdown
	resync := cfg.SecretSync.ResyncPeriod.Get()
	// Only what the webhook reads: Namespaces, LimitRanges, and of the Secrets only the sources and
	// our own copies, and those only when something is synced (the chart grants no Secret access
	// otherwise). Pods and other Secrets are never cached.
	byObject := map[client.Object]cache.ByObject{&corev1.Namespace{}: {}, &corev1.LimitRange{}: {}}
	if len(cfg.SyncedSecrets()) > 0 {
		byObject[&corev1.Secret{}] = secretsync.CacheConfig(cfg)
	}
	restConfig = rest.CopyConfig(restConfig)
	restConfig.QPS, restConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme: scheme,
		Logger: o.Logger,
		Cache: cache.Options{
			ByObject:                    byObject,
			SyncPeriod:                  &resync,
			DefaultTransform:            cache.TransformStripManagedFields(),
			ReaderFailOnMissingInformer: true,
		},
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir,
			CertName: o.WebhookCertName, KeyName: o.WebhookKeyName, TLSOpts: tlsOpts,
		}),
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        o.LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNS,
		// Step down at once on shutdown so another replica takes over the sync loop quickly.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdown,
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &o.SeveralInProcess},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	// With ReaderFailOnMissingInformer the cache refuses types without an informer, so the
	// informers the handler needs are started here, explicitly.
	for obj := range byObject {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("creating informer for %T: %w", obj, err)
		}
	}

	reg := o.MetricsRegistry
	if reg == nil {
		reg = ctrlmetrics.Registry // the registry controller-runtime's metrics endpoint serves
	}
	metrics, err := admission.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	syncMetrics, err := secretsync.NewMetrics(reg, mgr.GetCache())
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	syncer := secretsync.New(secretsync.Options{
		Client: mgr.GetClient(), Live: mgr.GetAPIReader(), Config: cfg, Exclude: o.ExcludeNamespaces,
		Events: mgr.GetEventRecorder("taskpod-webhook"), Metrics: syncMetrics, Log: o.Logger.WithName("secretsync"),
	})
	if err := syncer.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up secret sync: %w", err)
	}
	hopts := admission.Options{
		Policy: cfg.Policy(), Cache: mgr.GetCache(), Live: mgr.GetAPIReader(), Exclude: o.ExcludeNamespaces,
		Log: o.Logger.WithName("admission"), Metrics: metrics,
	}
	if syncer.HasSyncedSecrets() {
		hopts.Copies = syncer
	}
	mgr.GetWebhookServer().Register(admission.Path, admission.NewHandler(hopts))

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("cache", cacheSynced(mgr.GetCache())); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return mgr, nil
}

// cacheSynced is ready once the informers have synced, so a replica takes traffic only when it
// can answer from its cache.
func cacheSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return fmt.Errorf("caches not synced")
		}
		return nil
	}
}
