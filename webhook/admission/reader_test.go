package admission_test

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cacheReader stands in for the informer cache in benchmarks and fuzzing: map lookups that
// return deep copies, as controller-runtime's cache does, without the fake client's
// serialisation round trips that would dominate the numbers.
type cacheReader struct {
	namespaces map[string]*corev1.Namespace
	ranges     map[string][]corev1.LimitRange
}

func (r *cacheReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return apierrors.NewBadRequest("cacheReader reads namespaces only")
	}
	stored, found := r.namespaces[key.Name]
	if !found {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, key.Name)
	}
	stored.DeepCopyInto(ns)
	return nil
}

func (r *cacheReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l, ok := list.(*corev1.LimitRangeList)
	if !ok {
		return apierrors.NewBadRequest("cacheReader lists LimitRanges only")
	}
	o := client.ListOptions{}
	o.ApplyOptions(opts)
	l.Items = nil
	for i := range r.ranges[o.Namespace] {
		l.Items = append(l.Items, *r.ranges[o.Namespace][i].DeepCopy())
	}
	return nil
}

func defaultCache() *cacheReader {
	r := &cacheReader{namespaces: map[string]*corev1.Namespace{}, ranges: map[string][]corev1.LimitRange{}}
	for _, o := range defaultObjects() {
		r.namespaces[o.GetName()] = o.(*corev1.Namespace)
	}
	return r
}
