// Package admission is the only package that knows about AdmissionReview. It decodes the
// request, gathers the namespace's labels and LimitRanges from the manager's cache, calls the
// pure mutate package and answers with a patch computed by controller-runtime.
package admission
