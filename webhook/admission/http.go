package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// maxBodyBytes bounds a request body: two objects of at most 3 MiB (etcd's request limit) plus the
// review around them.
const maxBodyBytes = 7 << 20

// ServeHTTP answers an AdmissionReview v1. Unlike controller-runtime's own server, which answers
// malformed requests with HTTP 200 and a denial, it answers them with HTTP 400: the API server
// then applies the webhook's failurePolicy, so a broken request can never block a pod.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	review, err := decodeReview(r)
	if err != nil {
		h.metrics.observe(resultBadRequest)
		h.log.Error(err, "Rejected malformed admission request", "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	resp, err := h.admit(r.Context(), req)
	if err != nil {
		h.metrics.observe(resultBadRequest)
		h.log.Error(err, "Rejected malformed admission request", "uid", req.UID)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := resp.Complete(req); err != nil { // sets the UID and encodes the patch
		h.metrics.observe(resultError)
		h.log.Error(err, "Failed to complete admission response", "uid", req.UID)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &resp.AdmissionResponse}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		h.log.Error(err, "Failed to write admission response", "uid", req.UID)
	}
}

func decodeReview(r *http.Request) (*admissionv1.AdmissionReview, error) {
	if r.Method != http.MethodPost {
		return nil, fmt.Errorf("method %s not allowed, want POST", r.Method)
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return nil, fmt.Errorf("content type %q not supported, want application/json", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if len(body) > maxBodyBytes {
		return nil, fmt.Errorf("body larger than %d bytes", maxBodyBytes)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("body is not an AdmissionReview: %w", err)
	}
	gvk := review.GroupVersionKind()
	if gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return nil, fmt.Errorf("got %q, want admission.k8s.io/v1 AdmissionReview", gvk.String())
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
	}
	return &review, nil
}
