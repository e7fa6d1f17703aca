// Package integration runs the webhook against a real kube-apiserver and etcd and asserts on the
// pods the API server stores.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/taskpod/taskpod-webhook/test/harness"
	"github.com/taskpod/taskpod-webhook/webhook/app"
	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// Shared by every test in the package: one control plane, one webhook.
var (
	cp      *harness.ControlPlane
	webhook *harness.Webhook
	cfg     *config.Config
)

const ownNamespace = "taskpod-system"

const sharedConfig = `
imagePullSecrets:
- name: registry-credentials
  source: {namespace: taskpod-system, name: registry-credentials}
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	// The default policy, with the injected secret synced from the webhook's own namespace.
	if cfg, err = config.Parse([]byte(sharedConfig)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cp, err = harness.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping control plane:", err)
		}
	}()
	log := zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel()))
	if webhook, err = cp.RunWebhook(ctx, cfg, log, func(o *app.Options) {
		o.ExcludeNamespaces = append(o.ExcludeNamespaces, ownNamespace)
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer webhook.Stop()
	if err := setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context) error {
	if err := cp.CreateNamespace(ctx, ownNamespace, nil); err != nil {
		return err
	}
	if err := cp.Client.Create(ctx, registrySecret(ownNamespace, "registry-credentials", "v1")); err != nil {
		return fmt.Errorf("creating source secret: %w", err)
	}
	if err := cp.InstallWebhook(ctx, cfg, cp.WebhookOptions(ownNamespace)); err != nil {
		return fmt.Errorf("installing webhook configuration: %w", err)
	}
	if err := cp.CreateNamespace(ctx, "probe", optIn); err != nil {
		return err
	}
	return cp.WaitUntilCalled(ctx, "probe", kpoLabels)
}
