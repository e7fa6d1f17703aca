package mutate

import (
	"gopkg.in/inf.v0"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Bounds are the per-container constraints of a namespace's LimitRanges. The LimitRanger
// validation runs again after admission webhooks, so defaults must fit inside them.
type Bounds struct {
	Min      corev1.ResourceList
	Max      corev1.ResourceList
	MaxRatio corev1.ResourceList // maxLimitRequestRatio
}

// BoundsFrom folds the Container items of all LimitRanges in a namespace into the tightest
// bounds: the largest min, the smallest max and the smallest ratio.
func BoundsFrom(ranges []corev1.LimitRange) Bounds {
	var b Bounds
	for i := range ranges {
		for _, item := range ranges[i].Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			b.Min = fold(b.Min, item.Min, 1)
			b.Max = fold(b.Max, item.Max, -1)
			b.MaxRatio = fold(b.MaxRatio, item.MaxLimitRequestRatio, -1)
		}
	}
	return b
}

// fold merges from into into, keeping for each resource the value that compares to the kept
// one as want (1: larger, -1: smaller).
func fold(into, from corev1.ResourceList, want int) corev1.ResourceList {
	for name, q := range from {
		if into == nil {
			into = corev1.ResourceList{}
		}
		if cur, ok := into[name]; !ok || q.Cmp(cur) == want {
			into[name] = q.DeepCopy()
		}
	}
	return into
}

// clamp returns q moved into [min, max] of the bounds for the resource.
func (b Bounds) clamp(name corev1.ResourceName, q resource.Quantity) resource.Quantity {
	if lo, ok := b.Min[name]; ok && q.Cmp(lo) < 0 {
		q = lo.DeepCopy()
	}
	if hi, ok := b.Max[name]; ok && q.Cmp(hi) > 0 {
		q = hi.DeepCopy()
	}
	return q
}

// capRatio lowers limit so that limit/request stays within the maxLimitRequestRatio. The result is
// never below request, since a ratio is at least 1.
func (b Bounds) capRatio(name corev1.ResourceName, request, limit resource.Quantity) resource.Quantity {
	ratio, ok := b.MaxRatio[name]
	if !ok || request.IsZero() {
		return limit
	}
	// Exact decimal arithmetic: milli-units would overflow int64 for large memory values.
	most := resource.NewDecimalQuantity(*new(inf.Dec).Mul(request.AsDec(), ratio.AsDec()), limit.Format)
	if limit.Cmp(*most) > 0 && most.Cmp(request) >= 0 {
		return *most
	}
	return limit
}
