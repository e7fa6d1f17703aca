package config

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// validate checks the defaulted configuration and compiles it into the mutation policy.
func (c *Config) validate() error {
	p := &c.policy
	if len(c.TaskPods.Selectors) == 0 {
		return errors.New("taskPods.selectors: must list at least one selector, or no pod would ever be mutated")
	}
	for i := range c.TaskPods.Selectors {
		key := fmt.Sprintf("taskPods.selectors[%d]", i)
		s := &c.TaskPods.Selectors[i]
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			return fmt.Errorf("%s: an empty selector would match every pod; name the labels of task pods", key)
		}
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		p.TaskPods = append(p.TaskPods, sel)
	}

	sel, err := metav1.LabelSelectorAsSelector(c.Namespaces.Selector)
	if err != nil {
		return fmt.Errorf("namespaces.selector: %w", err)
	}
	if sel.Empty() {
		// An empty selector is allowed (every namespace opts in) but never Nothing().
		sel = labels.Everything()
	}
	p.Namespaces = sel

	seen := map[string]bool{}
	for i, s := range c.ImagePullSecrets {
		key := fmt.Sprintf("imagePullSecrets[%d].name", i)
		if s.Name == "" {
			return fmt.Errorf("%s: must not be empty", key)
		}
		if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
			return fmt.Errorf("%s: %q is not a valid Secret name: %s", key, s.Name, errs[0])
		}
		if seen[s.Name] {
			return fmt.Errorf("%s: %q is listed twice", key, s.Name)
		}
		seen[s.Name] = true
		p.PullSecrets = append(p.PullSecrets, s.Name)
		if err := validateSource(fmt.Sprintf("imagePullSecrets[%d].source", i), s.Source); err != nil {
			return err
		}
	}
	switch c.SecretSync.OnOptOut {
	case OptOutDelete, OptOutRetain:
	default:
		return fmt.Errorf("secretSync.onOptOut: %q is not one of delete, retain", c.SecretSync.OnOptOut)
	}
	if d, err := time.ParseDuration(string(c.SecretSync.ResyncPeriod)); err != nil || d < time.Minute {
		return fmt.Errorf("secretSync.resyncPeriod: %q is not a duration of at least 1m (e.g. 10m, 1h)", c.SecretSync.ResyncPeriod)
	}

	p.InitContainers = *c.Resources.InitContainers
	d := c.Resources.Defaults
	if p.Requests, err = quantities("resources.defaults.requests", d.Requests); err != nil {
		return err
	}
	if p.Limits, err = quantities("resources.defaults.limits", d.Limits); err != nil {
		return err
	}
	for name, req := range p.Requests {
		if lim, ok := p.Limits[name]; ok && req.Cmp(lim) > 0 {
			return fmt.Errorf("resources.defaults.requests.%s: %s is above resources.defaults.limits.%s (%s); a request may not exceed its limit",
				name, req.String(), name, lim.String())
		}
	}
	return nil
}

func validateSource(key string, src *SecretRef) error {
	if src == nil {
		return nil
	}
	if errs := validation.IsDNS1123Label(src.Namespace); len(errs) > 0 {
		return fmt.Errorf("%s.namespace: %q is not a valid namespace name: %s", key, src.Namespace, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(src.Name); len(errs) > 0 {
		return fmt.Errorf("%s.name: %q is not a valid Secret name: %s", key, src.Name, errs[0])
	}
	return nil
}

func quantities(key string, a Amounts) (corev1.ResourceList, error) {
	list := corev1.ResourceList{}
	for _, e := range []struct {
		name corev1.ResourceName
		v    *Amount
	}{{corev1.ResourceCPU, a.CPU}, {corev1.ResourceMemory, a.Memory}} {
		name, v := e.name, e.v
		if v == nil || *v == "" {
			continue // switched off
		}
		q, err := resource.ParseQuantity(string(*v))
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %q is not a quantity (want e.g. 500m, 2, 512Mi, 1Gi)", key, name, string(*v))
		}
		if q.Sign() <= 0 {
			return nil, fmt.Errorf("%s.%s: %q must be greater than zero", key, name, string(*v))
		}
		list[name] = q
	}
	return list, nil
}
