package admission_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// realisticReview is the KPO pod with XCom sidecar and init container from the mutate fixtures,
// defaulted roughly as the API server sends it.
func realisticReview(b testing.TB) []byte {
	raw, err := os.ReadFile("../mutate/testdata/kpo-xcom-init.pod.yaml")
	require.NoError(b, err)
	var pod corev1.Pod
	require.NoError(b, yaml.Unmarshal(raw, &pod))
	pod.Spec.ServiceAccountName = "default"
	pod.Spec.DNSPolicy = corev1.DNSClusterFirst
	pod.Spec.SchedulerName = "default-scheduler"
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		c.TerminationMessagePath = "/dev/termination-log"
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	return reviewFor(b, admissionv1.Create, optedIn, &pod)
}

func serve(b *testing.B, h http.Handler, body []byte) {
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkServeHTTP is the full handler on a task pod that gets mutated.
func BenchmarkServeHTTP(b *testing.B) {
	h := newHandler(b, defaultCache(), nil)
	body := realisticReview(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	serve(b, h, body)
}

// BenchmarkServeHTTPSkipped is a pod the webhook does not select (defence in depth: the API
// server's matchConditions normally keep these away).
func BenchmarkServeHTTPSkipped(b *testing.B) {
	h := newHandler(b, defaultCache(), nil)
	pod := kpoPod()
	pod.Labels = map[string]string{"app": "web"}
	body := reviewFor(b, admissionv1.Create, optedIn, pod)
	b.ReportAllocs()
	serve(b, h, body)
}

// BenchmarkDecodeEncodeFloor is the least any Go webhook must do with the same review: decode it,
// decode the pod, encode an allowed response. The gap to BenchmarkServeHTTP is our own cost.
func BenchmarkDecodeEncodeFloor(b *testing.B) {
	body := realisticReview(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(req.Body).Decode(&review); err != nil {
			b.Fatal(err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			b.Fatal(err)
		}
		out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta,
			Response: &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}}
		if err := json.NewEncoder(rec).Encode(&out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeHTTPSkippedZapInfo is the skipped path with the production logger (zap, info
// level): debug lines must cost nothing when debug logging is off.
func BenchmarkServeHTTPSkippedZapInfo(b *testing.B) {
	cfg, err := config.Parse(nil)
	require.NoError(b, err)
	h := admission.NewHandler(admission.Options{Policy: cfg.Policy(), Cache: defaultCache(),
		Log: zap.New(zap.WriteTo(io.Discard), zap.Level(zapcore.InfoLevel))})
	pod := kpoPod()
	pod.Labels = map[string]string{"app": "web"}
	body := reviewFor(b, admissionv1.Create, optedIn, pod)
	b.ReportAllocs()
	serve(b, h, body)
}
