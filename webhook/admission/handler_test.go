package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrladmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

const optedIn = "airflow-tasks"

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func defaultObjects() []client.Object {
	return []client.Object{
		namespace(optedIn, map[string]string{config.DefaultOptInLabel: config.DefaultOptInValue}),
		namespace("other", map[string]string{"team": "web"}),
	}
}

func newHandler(t testing.TB, cache, live client.Reader) *admission.Handler {
	t.Helper()
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	m, err := admission.NewMetrics(nil)
	require.NoError(t, err)
	return admission.NewHandler(admission.Options{Policy: cfg.Policy(), Cache: cache, Live: live, Log: logr.Discard(), Metrics: m})
}

func fakeReader(objs ...client.Object) client.Reader {
	return fake.NewClientBuilder().WithObjects(objs...).Build()
}

func kpoPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "etl-extract-1", Namespace: optedIn,
			Labels: map[string]string{"kubernetes_pod_operator": "True", "dag_id": "etl", "task_id": "extract"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "base", Image: "etl:1"}}},
	}
}

func reviewFor(t testing.TB, op admissionv1.Operation, ns string, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	require.NoError(t, err)
	return reviewRaw(t, op, ns, raw)
}

func reviewRaw(t testing.TB, op admissionv1.Operation, ns string, raw []byte) []byte {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-1"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns,
			Operation: op,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(review)
	require.NoError(t, err)
	return b
}

// post sends body to the handler and returns the HTTP status and, for 200, the response.
func post(t testing.TB, h http.Handler, body []byte) (int, *admissionv1.AdmissionResponse, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code, nil, rec.Body.String()
	}
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, "admission.k8s.io/v1", out.APIVersion)
	require.Equal(t, "AdmissionReview", out.Kind)
	require.NotNil(t, out.Response)
	return rec.Code, out.Response, ""
}

// applyPatch applies the response's JSON patch to the pod as sent.
func applyPatch(t testing.TB, pod *corev1.Pod, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	require.NoError(t, err)
	return applyPatchRaw(t, raw, resp)
}

// applyPatchRaw applies the patch to the exact bytes sent, as the API server does.
func applyPatchRaw(t testing.TB, raw []byte, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	if len(resp.Patch) > 0 {
		require.Equal(t, admissionv1.PatchTypeJSONPatch, *resp.PatchType)
		p, err := jsonpatch.DecodePatch(resp.Patch)
		require.NoError(t, err)
		raw, err = p.Apply(raw)
		require.NoError(t, err)
	}
	var out corev1.Pod
	require.NoError(t, json.Unmarshal(raw, &out))
	return &out
}

func TestMutatesTaskPod(t *testing.T) {
	h := newHandler(t, fakeReader(defaultObjects()...), nil)
	pod := kpoPod()
	code, resp, _ := post(t, h, reviewFor(t, admissionv1.Create, optedIn, pod))
	require.Equal(t, http.StatusOK, code)
	require.True(t, resp.Allowed)
	require.Equal(t, types.UID("uid-1"), resp.UID)

	got := applyPatch(t, pod, resp)
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, got.Spec.ImagePullSecrets)
	require.Equal(t, "imagePullSecrets,resources", got.Annotations[mutate.MutatedAnnotation])
	require.Equal(t, "1Gi", got.Spec.Containers[0].Resources.Limits.Memory().String())
	require.Equal(t, pod.Labels, got.Labels, "labels are never touched")

	// Reinvocation with the mutated pod yields no patch.
	code, resp, _ = post(t, h, reviewFor(t, admissionv1.Create, optedIn, got))
	require.Equal(t, http.StatusOK, code)
	require.True(t, resp.Allowed)
	require.Empty(t, resp.Patch)
}

func TestAdmitsUntouched(t *testing.T) {
	optedOut := kpoPod()
	optedOut.Annotations = map[string]string{mutate.OptOutAnnotation: mutate.OptOutValue}
	plain := kpoPod()
	plain.Labels = map[string]string{"app": "web"}
	tests := map[string]struct {
		body func(t *testing.T) []byte
	}{
		"UPDATE":                 {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Update, optedIn, kpoPod()) }},
		"DELETE":                 {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Delete, optedIn, kpoPod()) }},
		"CONNECT":                {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Connect, optedIn, kpoPod()) }},
		"namespace not opted in": {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Create, "other", kpoPod()) }},
		"namespace unknown":      {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Create, "nowhere", kpoPod()) }},
		"non-task pod":           {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Create, optedIn, plain) }},
		"pod opted out":          {body: func(t *testing.T) []byte { return reviewFor(t, admissionv1.Create, optedIn, optedOut) }},
		"wrong resource": {body: func(t *testing.T) []byte {
			var r admissionv1.AdmissionReview
			require.NoError(t, json.Unmarshal(reviewFor(t, admissionv1.Create, optedIn, kpoPod()), &r))
			r.Request.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "secrets"}
			r.Request.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}
			b, _ := json.Marshal(r)
			return b
		}},
		"pod subresource": {body: func(t *testing.T) []byte {
			var r admissionv1.AdmissionReview
			require.NoError(t, json.Unmarshal(reviewFor(t, admissionv1.Create, optedIn, kpoPod()), &r))
			r.Request.SubResource = "binding"
			b, _ := json.Marshal(r)
			return b
		}},
	}
	h := newHandler(t, fakeReader(defaultObjects()...), fakeReader(defaultObjects()...))
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, resp, _ := post(t, h, tc.body(t))
			require.Equal(t, http.StatusOK, code)
			require.True(t, resp.Allowed)
			require.Empty(t, resp.Patch)
			require.Nil(t, resp.PatchType)
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	valid := func(t *testing.T) []byte { return reviewFor(t, admissionv1.Create, optedIn, kpoPod()) }
	edit := func(f func(r *admissionv1.AdmissionReview)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			var r admissionv1.AdmissionReview
			require.NoError(t, json.Unmarshal(valid(t), &r))
			f(&r)
			b, err := json.Marshal(r)
			require.NoError(t, err)
			return b
		}
	}
	tests := map[string]struct {
		method, contentType string
		body                func(t *testing.T) []byte
		want                string
	}{
		"empty body":       {body: func(*testing.T) []byte { return nil }, want: "not an AdmissionReview"},
		"not JSON":         {body: func(*testing.T) []byte { return []byte("<html>") }, want: "not an AdmissionReview"},
		"JSON array":       {body: func(*testing.T) []byte { return []byte("[1,2]") }, want: "not an AdmissionReview"},
		"truncated":        {body: func(t *testing.T) []byte { b := valid(t); return b[:len(b)/2] }, want: "not an AdmissionReview"},
		"wrong method":     {method: http.MethodGet, body: valid, want: "method GET not allowed"},
		"wrong type":       {contentType: "text/plain", body: valid, want: `content type "text/plain" not supported`},
		"v1beta1 review":   {body: edit(func(r *admissionv1.AdmissionReview) { r.APIVersion = "admission.k8s.io/v1beta1" }), want: "want admission.k8s.io/v1 AdmissionReview"},
		"other kind":       {body: edit(func(r *admissionv1.AdmissionReview) { r.Kind = "Pod" }), want: "want admission.k8s.io/v1 AdmissionReview"},
		"no request":       {body: edit(func(r *admissionv1.AdmissionReview) { r.Request = nil }), want: "has no request"},
		"no uid":           {body: edit(func(r *admissionv1.AdmissionReview) { r.Request.UID = "" }), want: "has no uid"},
		"no object":        {body: edit(func(r *admissionv1.AdmissionReview) { r.Request.Object.Raw = nil }), want: "request.object is empty"},
		"object not a pod": {body: func(t *testing.T) []byte { return reviewRaw(t, admissionv1.Create, optedIn, []byte(`{"spec":"nope"}`)) }, want: "request.object is not a pod"},
		"too large": {body: func(*testing.T) []byte {
			return append([]byte(`{"apiVersion":"`), bytes.Repeat([]byte("a"), 8<<20)...)
		}, want: "body larger than"},
	}
	h := newHandler(t, fakeReader(defaultObjects()...), nil)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, admission.Path, bytes.NewReader(tc.body(t)))
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusBadRequest, rec.Code)
			require.Contains(t, rec.Body.String(), tc.want)
		})
	}
}

func TestHandleAnswersBadObjectWithError(t *testing.T) {
	h := newHandler(t, fakeReader(defaultObjects()...), nil)
	resp := h.Handle(context.Background(), ctrladmission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Namespace: optedIn,
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Object:   runtime.RawExtension{Raw: []byte(`{"metadata":7}`)},
	}})
	require.False(t, resp.Allowed)
	require.EqualValues(t, http.StatusBadRequest, resp.Result.Code)
}

func TestNamespaceNotYetCachedIsReadLive(t *testing.T) {
	live := fakeReader(defaultObjects()...)
	h := newHandler(t, fakeReader(), live) // empty cache
	code, resp, _ := post(t, h, reviewFor(t, admissionv1.Create, optedIn, kpoPod()))
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, resp.Patch)
}

func TestLimitRangeFromCacheIsHonoured(t *testing.T) {
	lr := &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "tight", Namespace: optedIn},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
		}}},
	}
	h := newHandler(t, fakeReader(append(defaultObjects(), lr)...), nil)
	pod := kpoPod()
	_, resp, _ := post(t, h, reviewFor(t, admissionv1.Create, optedIn, pod))
	got := applyPatch(t, pod, resp)
	require.Equal(t, "500m", got.Spec.Containers[0].Resources.Limits.Cpu().String())
}

func TestCacheErrorsFailOpen(t *testing.T) {
	broken := func(what string) client.Reader {
		return fake.NewClientBuilder().WithObjects(defaultObjects()...).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if what == "get" {
					return errors.New("cache not synced")
				}
				return c.Get(ctx, key, obj, opts...)
			},
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if what == "list" {
					return errors.New("cache not synced")
				}
				return c.List(ctx, list, opts...)
			},
		}).Build()
	}
	for _, what := range []string{"get", "list"} {
		t.Run(what, func(t *testing.T) {
			h := newHandler(t, broken(what), nil)
			code, resp, _ := post(t, h, reviewFor(t, admissionv1.Create, optedIn, kpoPod()))
			require.Equal(t, http.StatusOK, code)
			require.True(t, resp.Allowed, "a webhook that cannot work must not block pods")
			require.Empty(t, resp.Patch)
			require.NotEmpty(t, resp.Warnings)
			require.True(t, strings.HasPrefix(resp.Warnings[0], "taskpod-webhook could not apply"))
		})
	}
}

type recordingCopies struct{ namespaces []string }

func (r *recordingCopies) EnsureCopies(_ context.Context, ns string) error {
	r.namespaces = append(r.namespaces, ns)
	return errors.New("API server unavailable") // must not block the pod
}

func TestEnsuresCopiesExceptOnDryRun(t *testing.T) {
	cfg, err := config.Parse(nil)
	require.NoError(t, err)
	copies := &recordingCopies{}
	h := admission.NewHandler(admission.Options{Policy: cfg.Policy(), Cache: fakeReader(defaultObjects()...), Copies: copies, Log: logr.Discard()})

	var dry admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(reviewFor(t, admissionv1.Create, optedIn, kpoPod()), &dry))
	dry.Request.DryRun = ptrTo(true)
	body, err := json.Marshal(dry)
	require.NoError(t, err)
	_, resp, _ := post(t, h, body)
	require.NotEmpty(t, resp.Patch)
	require.Empty(t, copies.namespaces, "a dry-run must have no side effects")

	_, resp, _ = post(t, h, reviewFor(t, admissionv1.Create, optedIn, kpoPod()))
	require.NotEmpty(t, resp.Patch, "a failure to create the copy does not block the mutation")
	require.Equal(t, []string{optedIn}, copies.namespaces)

	_, _, _ = post(t, h, reviewFor(t, admissionv1.Create, "other", kpoPod()))
	require.Equal(t, []string{optedIn}, copies.namespaces, "only opted-in namespaces")
}

func ptrTo[T any](v T) *T { return &v }
