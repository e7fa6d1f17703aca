package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/taskpod/taskpod-webhook/webhook/app"
	"github.com/taskpod/taskpod-webhook/webhook/config"
)

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := app.DefaultOptions()
	configPath := fs.String("config", "", "Path to the configuration file; built-in defaults when empty.")
	kubeconfig := fs.String("kubeconfig", "", "Path to a kubeconfig; $KUBECONFIG or the in-cluster config when empty.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "Address the webhook server listens on; all interfaces when empty.")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port the webhook server listens on.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", o.WebhookCertDir, "Directory holding the serving certificate and key (reloaded when they change).")
	fs.StringVar(&o.WebhookCertName, "webhook-cert-name", o.WebhookCertName, "File name of the serving certificate in --webhook-cert-dir.")
	fs.StringVar(&o.WebhookKeyName, "webhook-key-name", o.WebhookKeyName, "File name of the serving key in --webhook-cert-dir.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2, "Serve webhooks over HTTP/2 as well (off: HTTP/2 has had denial-of-service flaws).")
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "Elect a leader to run the secret sync loop; every replica serves the webhook.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the Lease used for leader election.")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", o.LeaderElectionNS, "Namespace of the Lease; the pod's own namespace when empty.")
	fs.DurationVar(&o.GracefulShutdown, "graceful-shutdown-timeout", o.GracefulShutdown, "How long to let in-flight requests finish on shutdown.")
	exclude := fs.String("exclude-namespaces", strings.Join(o.ExcludeNamespaces, ","), "Comma-separated namespaces never mutated or synced into; the webhook's own namespace (from $POD_NAMESPACE) is added.")
	fs.Func("kube-api-qps", "Requests per second to the API server (default 50).", floatFlag(&o.KubeAPIQPS))
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of requests to the API server.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %v", fs.Args())
	}

	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	o.ExcludeNamespaces = splitList(*exclude)
	if own := os.Getenv("POD_NAMESPACE"); own != "" {
		o.ExcludeNamespaces = append(o.ExcludeNamespaces, own)
	}
	log := zap.New(zap.UseFlagOptions(&zapOpts))
	// controller-runtime's own packages log through its global logger; give it ours.
	ctrl.SetLogger(log)
	o.Logger = log

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restConfig.UserAgent = "taskpod-webhook/" + version

	mgr, err := app.New(ctx, restConfig, cfg, o)
	if err != nil {
		return err
	}
	log.Info("Starting taskpod-webhook", "version", version, "webhookPort", o.WebhookPort,
		"pullSecrets", cfg.Policy().PullSecrets)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func floatFlag(dst *float32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil || v <= 0 {
			return fmt.Errorf("want a positive number, got %q", s)
		}
		*dst = float32(v)
		return nil
	}
}

// loadConfig reads the file at path, or returns the defaults when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(nil)
	}
	return config.Load(path)
}
