// Command demo shows the webhook at work on a local kube-apiserver + etcd: it opts a namespace
// in, creates an Airflow-shaped task pod and an ordinary pod, and prints what the webhook changed.
// `make demo` builds the control plane from Go modules first.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/taskpod/taskpod-webhook/test/harness"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

const namespace = "airflow-tasks"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it started has stopped")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	configPath := fs.String("config", "", "Configuration file for the webhook; defaults when empty.")
	verbose := fs.Bool("v", false, "Show the webhook's own log.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The defaults, with the pull secret synced from the webhook's own namespace.
	cfg, err := config.Parse([]byte("imagePullSecrets:\n- name: registry-credentials\n  source: {namespace: taskpod-system, name: registry-credentials}\n"))
	if *configPath != "" {
		cfg, err = config.Load(*configPath)
	}
	if err != nil {
		return err
	}
	level := zapcore.ErrorLevel
	if *verbose {
		level = zapcore.DebugLevel
	}

	step(out, "Starting kube-apiserver and etcd (built from Go modules into bin/)")
	cp, err := harness.Start()
	if err != nil {
		return err
	}
	defer func() {
		step(out, "Stopping the webhook, kube-apiserver and etcd")
		if stopErr := cp.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()

	step(out, "Starting taskpod-webhook (the serve command's code path) on "+cp.WebhookURL())
	wh, err := cp.RunWebhook(ctx, cfg, zap.New(zap.Level(level)))
	if err != nil {
		return err
	}
	defer wh.Stop()

	step(out, "Creating the registry Secret taskpod-system/registry-credentials (the sync source)")
	if err := cp.CreateNamespace(ctx, "taskpod-system", nil); err != nil {
		return err
	}
	if err := cp.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials", Namespace: "taskpod-system"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry":{"auth":"ZGVtbzpkZW1v"}}}`)},
	}); err != nil {
		return err
	}
	step(out, "Installing the MutatingWebhookConfiguration (failurePolicy Ignore, CREATE of task pods only)")
	if err := cp.InstallWebhook(ctx, cfg, cp.WebhookOptions("taskpod-system")); err != nil {
		return err
	}

	step(out, fmt.Sprintf("Opting namespace %s in: label %s=%s", namespace, config.DefaultOptInLabel, config.DefaultOptInValue))
	if err := cp.CreateNamespace(ctx, namespace, map[string]string{config.DefaultOptInLabel: config.DefaultOptInValue}); err != nil {
		return err
	}
	if err := cp.WaitUntilCalled(ctx, namespace, map[string]string{"kubernetes_pod_operator": "True"}); err != nil {
		return fmt.Errorf("the API server never called the webhook: %w", err)
	}

	for _, pod := range []*corev1.Pod{taskPod(), ordinaryPod()} {
		sent := pod.DeepCopy()
		if err := cp.Client.Create(ctx, pod); err != nil {
			return fmt.Errorf("creating pod %s: %w", pod.Name, err)
		}
		var stored corev1.Pod
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
			return err
		}
		report(out, sent, &stored)
	}
	var copies corev1.SecretList
	if err := cp.Client.List(ctx, &copies, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/managed-by": "taskpod-webhook"}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nSecrets the sync loop keeps in %s:\n", namespace)
	for _, s := range copies.Items {
		fmt.Fprintf(out, "  %s (type %s, copied from %s)\n", s.Name, s.Type, s.Annotations["taskpod.io/source"])
	}
	fmt.Fprintln(out, "\nDone. Try your own pods offline with: taskpod-webhook mutate -f pod.yaml")
	return nil
}

// taskPod is shaped like a KubernetesPodOperator pod with XCom enabled.
func taskPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "etl-extract-7f3k2b1q", Namespace: namespace, Labels: map[string]string{
			"kubernetes_pod_operator": "True", "dag_id": "etl", "task_id": "extract",
			"run_id": "scheduled__2026-12-04T0000000000", "try_number": "1", "airflow_version": "3.1.0",
		}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{
				{Name: "base", Image: "etl/extract:2.4.1", Command: []string{"python", "-m", "etl.extract"}},
				{Name: "airflow-xcom-sidecar", Image: "alpine", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("10Mi")}}},
			},
		},
	}
}

func ordinaryPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "debug-shell", Namespace: namespace, Labels: map[string]string{"app": "debug"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "shell", Image: "busybox"}}},
	}
}

func step(out io.Writer, msg string) {
	fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), msg)
}

// report prints what the webhook changed between the pod as sent and as stored.
func report(out io.Writer, sent, stored *corev1.Pod) {
	fmt.Fprintf(out, "\nPod %s/%s (labels: %s)\n", stored.Namespace, stored.Name, labelString(sent.Labels))
	changes := stored.Annotations[mutate.MutatedAnnotation]
	if changes == "" {
		fmt.Fprintln(out, "  unchanged: not a task pod, so the API server never even called the webhook")
		return
	}
	fmt.Fprintf(out, "  annotation %s: %s\n", mutate.MutatedAnnotation, changes)
	fmt.Fprintf(out, "  imagePullSecrets: %s -> %s\n", secretNames(sent.Spec.ImagePullSecrets), secretNames(stored.Spec.ImagePullSecrets))
	for i, c := range stored.Spec.Containers {
		before := sent.Spec.Containers[i].Resources
		fmt.Fprintf(out, "  container %s:\n", c.Name)
		fmt.Fprintf(out, "    requests: %s -> %s\n", listString(before.Requests), listString(c.Resources.Requests))
		fmt.Fprintf(out, "    limits:   %s -> %s\n", listString(before.Limits), listString(c.Resources.Limits))
	}
}

func labelString(l map[string]string) string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func secretNames(refs []corev1.LocalObjectReference) string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func listString(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "(none)"
	}
	var kv []string
	for k, v := range l {
		kv = append(kv, fmt.Sprintf("%s=%s", k, v.String()))
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}
