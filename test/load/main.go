// Command load measures the sync loop at scale against a local kube-apiserver + etcd, running
// the real taskpod-webhook binary (`make load`):
//
//   - how long a source rotation takes to reach every copy in N opted-in namespaces;
//   - the process's memory with N opted-in namespaces, without and then with M unrelated
//     Secrets in the cluster (they must not be cached, so memory must not grow with them).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/taskpod/taskpod-webhook/test/harness"
)

const (
	sourceNS   = "taskpod-system"
	secretName = "registry-credentials"
	optInLabel = "taskpod.io/inject"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	binary := flag.String("binary", "bin/taskpod-webhook", "The taskpod-webhook binary to measure.")
	namespaces := flag.Int("namespaces", 1000, "Opted-in namespaces.")
	unrelated := flag.Int("unrelated-secrets", 5000, "Unrelated Secrets added for the second memory reading.")
	qps := flag.String("kube-api-qps", "", "Passed to the webhook's --kube-api-qps (its default when empty).")
	flag.Parse()

	cp, err := harness.Start()
	if err != nil {
		return err
	}
	defer cp.Stop()
	cs, err := kubernetes.NewForConfig(withRate(cp))
	if err != nil {
		return err
	}
	c := cp.Client

	if err := cp.CreateNamespace(ctx, sourceNS, nil); err != nil {
		return err
	}
	src := dockerSecret("v1")
	if err := c.Create(ctx, src); err != nil {
		return err
	}
	start := time.Now()
	if err := parallel(*namespaces, func(i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tasks-%04d", i), Labels: map[string]string{optInLabel: "enabled"}}}
		_, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("created %d opted-in namespaces in %s\n", *namespaces, time.Since(start).Round(time.Millisecond))

	// Reading 1: N namespaces, no unrelated Secrets.
	proc, err := startWebhook(ctx, cp, *binary, *qps)
	if err != nil {
		return err
	}
	start = time.Now()
	if err := waitCopies(ctx, cs, *namespaces, string(src.Data[corev1.DockerConfigJsonKey])); err != nil {
		proc.stop()
		return err
	}
	fmt.Printf("initial sync of %d copies: %s\n", *namespaces, time.Since(start).Round(time.Millisecond))
	memBase, err := proc.memory(ctx)
	if err != nil {
		proc.stop()
		return err
	}

	// Rotation.
	rotated := dockerSecret("v2")
	src.Data = rotated.Data
	start = time.Now()
	if err := c.Update(ctx, src); err != nil {
		proc.stop()
		return err
	}
	if err := waitCopies(ctx, cs, *namespaces, string(rotated.Data[corev1.DockerConfigJsonKey])); err != nil {
		proc.stop()
		return err
	}
	rotation := time.Since(start)
	fmt.Printf("rotation reached all %d copies in %s\n", *namespaces, rotation.Round(time.Millisecond))
	proc.stop()

	// Reading 2: the same, plus M unrelated Secrets of 1 KiB each.
	payload := strings.Repeat("x", 1024)
	start = time.Now()
	if err := parallel(*unrelated, func(i int) error {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-secret-%d", i), Namespace: fmt.Sprintf("tasks-%04d", i%*namespaces)},
			StringData: map[string]string{"token": payload}}
		_, err := cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("created %d unrelated Secrets in %s\n", *unrelated, time.Since(start).Round(time.Millisecond))
	proc, err = startWebhook(ctx, cp, *binary, *qps)
	if err != nil {
		return err
	}
	defer proc.stop()
	if err := waitCopies(ctx, cs, *namespaces, string(rotated.Data[corev1.DockerConfigJsonKey])); err != nil {
		return err
	}
	memMore, err := proc.memory(ctx)
	if err != nil {
		return err
	}

	fmt.Printf("\n%-46s %14s %14s\n", "memory of taskpod-webhook serve", "heap in use", "resident")
	fmt.Printf("%-46s %11.1f MiB %11.1f MiB\n", fmt.Sprintf("%d namespaces, no unrelated Secrets", *namespaces), memBase.heap/1048576, memBase.rss/1048576)
	fmt.Printf("%-46s %11.1f MiB %11.1f MiB\n", fmt.Sprintf("%d namespaces, %d unrelated Secrets", *namespaces, *unrelated), memMore.heap/1048576, memMore.rss/1048576)
	fmt.Printf("rotation to %d namespaces: %s\n", *namespaces, rotation.Round(time.Millisecond))
	return nil
}

func withRate(cp *harness.ControlPlane) *rest.Config {
	cfg := *cp.Config
	cfg.QPS, cfg.Burst = 500, 1000
	return &cfg
}

func dockerSecret(version string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: sourceNS},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry":{"auth":"` + version + `"}}}`)},
	}
}

// parallel runs f for 0..n-1 on 16 workers and returns the first error.
func parallel(n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitCopies polls until n copies hold want.
func waitCopies(ctx context.Context, cs *kubernetes.Clientset, n int, want string) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=taskpod-webhook"})
		if err != nil {
			return false, nil
		}
		done := 0
		for i := range list.Items {
			if string(list.Items[i].Data[corev1.DockerConfigJsonKey]) == want {
				done++
			}
		}
		return done >= n, nil
	})
}

type process struct {
	cmd         *exec.Cmd
	metricsAddr string
}

type memory struct{ heap, rss float64 }

func startWebhook(ctx context.Context, cp *harness.ControlPlane, binary, qps string) (*process, error) {
	dir, err := os.MkdirTemp("", "taskpod-load-")
	if err != nil {
		return nil, err
	}
	kubeconfig, err := cp.WriteKubeconfig(dir, "load")
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"config.yaml": fmt.Sprintf("imagePullSecrets:\n- name: %s\n  source: {namespace: %s, name: %s}\n", secretName, sourceNS, secretName),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	p := &process{metricsAddr: fmt.Sprintf("127.0.0.1:%d", metricsPort)}
	args := []string{"serve",
		"--kubeconfig", kubeconfig, "--config", filepath.Join(dir, "config.yaml"),
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(port), "--webhook-cert-dir", cp.ServingCertDir(),
		"--metrics-bind-address", p.metricsAddr, "--health-probe-bind-address", "0", "--zap-log-level", "error"}
	if qps != "" {
		args = append(args, "--kube-api-qps", qps, "--kube-api-burst", qps)
	}
	p.cmd = exec.CommandContext(ctx, binary, args...)
	p.cmd.Env = append(os.Environ(), "POD_NAMESPACE="+sourceNS)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// memory waits for the process to settle, then reads heap in use (the minimum of several
// scrapes, to see past garbage not yet collected) and resident memory from its metrics.
func (p *process) memory(ctx context.Context) (memory, error) {
	var best memory
	for i := range 10 {
		select {
		case <-ctx.Done():
			return best, ctx.Err()
		case <-time.After(time.Second):
		}
		m, err := p.scrape()
		if err != nil {
			return best, err
		}
		if i == 0 || m.heap < best.heap {
			best.heap = m.heap
		}
		best.rss = m.rss
	}
	return best, nil
}

func (p *process) scrape() (memory, error) {
	resp, err := http.Get("http://" + p.metricsAddr + "/metrics")
	if err != nil {
		return memory{}, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (memory, error) {
	var m memory
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "go_memstats_heap_inuse_bytes":
			m.heap = v
		case "process_resident_memory_bytes":
			m.rss = v
		}
	}
	return m, sc.Err()
}
