package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpod/taskpod-webhook/test/harness"
)

// TestServeBinary runs the real `taskpod-webhook serve` with its flags: it becomes ready, serves
// health, readiness and metrics, and shuts down cleanly on SIGTERM.
func TestServeBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "taskpod-webhook")
	build := exec.Command("go", "build", "-o", bin, "./cmd/taskpod-webhook")
	build.Dir = "../.."
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	kubeconfig, err := cp.WriteKubeconfig(dir, "serve-test")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(sharedConfig), 0o600))
	ports := make([]int, 3)
	for i := range ports {
		ports[i], err = harness.FreePort()
		require.NoError(t, err)
	}
	webhookPort, metricsPort, probePort := ports[0], ports[1], ports[2]

	cmd := exec.Command(bin, "serve",
		"--kubeconfig", kubeconfig, "--config", filepath.Join(dir, "config.yaml"),
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(webhookPort), "--webhook-cert-dir", cp.ServingCertDir(),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--leader-elect", "--leader-election-namespace", ownNamespace, "--leader-election-id", "serve-test",
		"--graceful-shutdown-timeout", "5s")
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ownNamespace)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("serve log:\n%s", logs.String())
		}
	})

	get := func(port int, path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.Eventually(t, func() bool { code, _ := get(probePort, "/readyz"); return code == http.StatusOK }, 30*time.Second, 100*time.Millisecond, "never ready")
	code, _ := get(probePort, "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body := get(metricsPort, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "taskpod_webhook_admission_reviews_total")
	require.Contains(t, body, "taskpod_webhook_secret_sync_total")

	// Graceful shutdown: SIGTERM ends the process with status 0, in time.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of SIGTERM")
	}
}
