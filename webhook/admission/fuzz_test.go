package admission_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/taskpod/taskpod-webhook/webhook/admission"
)

// FuzzAdmitPod sends arbitrary pod objects in a well-formed review. The handler must answer 200 or
// 400 without panicking; a patch must apply, leave no container with a cpu or memory request
// above its limit unless the author wrote it so, and a second pass must yield no patch.
func FuzzAdmitPod(f *testing.F) {
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"containers":[{"name":"base"}]}}`))
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_executor":"True"}},"spec":{"containers":[{"name":"base","resources":{"requests":{"cpu":"3"}}}]}}`))
	h := newHandler(f, defaultCache(), nil)
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Spliced in as bytes: the object may be anything, including invalid JSON.
		review := append(append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"f","operation":"CREATE","namespace":"`+optedIn+`","resource":{"version":"v1","resource":"pods"},"object":`), raw...), "}}"...)
		code, resp, body := post(t, h, review)
		if code == http.StatusBadRequest {
			return
		}
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		if !resp.Allowed {
			t.Fatalf("pod denied: %+v", resp.Result)
		}
		if len(resp.Patch) == 0 {
			return
		}
		var before corev1.Pod
		if err := json.Unmarshal(raw, &before); err != nil {
			t.Fatalf("200 for an object that is not a pod: %v", err)
		}
		after := applyPatchRaw(t, raw, resp)
		checkRequestsWithinLimits(t, &before, after)

		_, again, _ := post(t, h, reviewFor(t, admissionv1.Create, optedIn, after))
		if len(again.Patch) != 0 {
			t.Fatalf("not idempotent: second pass patched %s", again.Patch)
		}
	})
}

// FuzzServeHTTP sends arbitrary bodies: only 200 or 400, never a panic.
func FuzzServeHTTP(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}`))
	f.Add([]byte(`{}`))
	h := newHandler(f, defaultCache(), nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}

func checkRequestsWithinLimits(t *testing.T, before, after *corev1.Pod) {
	t.Helper()
	pairs := func(p *corev1.Pod) []corev1.Container {
		return append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	}
	b, a := pairs(before), pairs(after)
	if len(a) != len(b) {
		t.Fatalf("containers added or removed: %d -> %d", len(b), len(a))
	}
	for i := range a {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okR := a[i].Resources.Requests[name]
			lim, okL := a[i].Resources.Limits[name]
			if !okR || !okL || req.Cmp(lim) <= 0 {
				continue
			}
			bReq, bOkR := b[i].Resources.Requests[name]
			bLim, bOkL := b[i].Resources.Limits[name]
			if bOkR && bOkL && bReq.Cmp(req) == 0 && bLim.Cmp(lim) == 0 {
				continue // the author's own invalid pair, left as it was
			}
			t.Fatalf("container %d: %s request %s above limit %s", i, name, req.String(), lim.String())
		}
	}
}
