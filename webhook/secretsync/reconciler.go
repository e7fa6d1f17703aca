package secretsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// Reconciler syncs the copies of one namespace per request.
type Reconciler struct {
	client   client.Client // reads from the manager's scoped cache, writes to the API server
	live     client.Reader // the API server: only to look behind a copy the cache does not hold
	entries  []config.PullSecret
	optIn    labels.Selector
	excluded map[string]bool
	onOptOut config.OptOutPolicy
	events   events.EventRecorder
	metrics  *Metrics
	log      logr.Logger

	mu        sync.Mutex
	conflicts map[types.NamespacedName]time.Time // when the conflict was last seen
	unusable  map[string]string                  // source → reason last reported, so it is reported once
	seen      map[string]time.Time               // content hash → when the source was first seen with it
}

// Options configure a Reconciler.
type Options struct {
	Client  client.Client
	Live    client.Reader
	Config  *config.Config
	Exclude []string // namespaces never synced into: kube-system and the webhook's own
	Events  events.EventRecorder
	Metrics *Metrics
	Log     logr.Logger
}

// New builds a Reconciler. Namespaces holding a source are excluded too, so a source is never
// written even when its namespace opts in.
func New(o Options) *Reconciler {
	r := &Reconciler{
		client: o.Client, live: o.Live, entries: o.Config.SyncedSecrets(),
		optIn: o.Config.Policy().Namespaces, onOptOut: o.Config.SecretSync.OnOptOut,
		events: o.Events, metrics: o.Metrics, log: o.Log,
		excluded:  map[string]bool{},
		conflicts: map[types.NamespacedName]time.Time{},
		unusable:  map[string]string{},
		seen:      map[string]time.Time{},
	}
	for _, ns := range o.Exclude {
		r.excluded[ns] = true
	}
	for _, e := range r.entries {
		r.excluded[e.Source.Namespace] = true
	}
	return r
}

// SetupWithManager registers the controller, which runs only on the elected leader. Without a
// synced entry there is nothing to do and no controller is registered.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if len(r.entries) == 0 {
		return nil
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("secretsync").
		For(&corev1.Namespace{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.namespacesFor)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 8}).
		Complete(r)
}

// namespacesFor maps a Secret event to the namespaces to reconcile: a source's change concerns
// every namespace, a copy's change only its own.
func (r *Reconciler) namespacesFor(ctx context.Context, obj client.Object) []reconcile.Request {
	src := obj.GetNamespace() + "/" + obj.GetName()
	for _, e := range r.entries {
		if e.Source.String() != src {
			continue
		}
		if s, ok := obj.(*corev1.Secret); ok {
			r.noteSourceContent(s)
		}
		var list corev1.NamespaceList
		if err := r.client.List(ctx, &list); err != nil {
			r.log.Error(err, "Failed to list namespaces after a source Secret changed", "source", src)
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
		return reqs
	}
	if obj.GetLabels()[ManagedByLabel] == ManagedByValue {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: obj.GetNamespace()}}}
	}
	return nil
}

// noteSourceContent remembers when a source's content was first seen, for the rotation lag.
func (r *Reconciler) noteSourceContent(s *corev1.Secret) {
	h := contentHash([]byte(s.UID), s.Type, s.Data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[h]; !ok {
		if len(r.seen) > 64 { // only recent rotations matter; keep the map small
			clear(r.seen)
		}
		r.seen[h] = time.Now()
	}
}

// Reconcile brings one namespace's copies to the desired state.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ns corev1.Namespace
	if err := r.client.Get(ctx, req.NamespacedName, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetNamespace(req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if r.excluded[ns.Name] {
		return reconcile.Result{}, nil
	}
	var owned corev1.SecretList
	if err := r.client.List(ctx, &owned, client.InNamespace(ns.Name), client.MatchingLabels{ManagedByLabel: ManagedByValue}); err != nil {
		return reconcile.Result{}, err
	}
	ownedByName := map[string]*corev1.Secret{}
	for i := range owned.Items {
		ownedByName[owned.Items[i].Name] = &owned.Items[i]
	}

	var errs []error
	if ns.DeletionTimestamp == nil && r.optIn.Matches(labels.Set(ns.Labels)) {
		for _, e := range r.entries {
			errs = append(errs, r.syncCopy(ctx, &ns, e, ownedByName[e.Name]))
		}
		return reconcile.Result{}, errors.Join(errs...)
	}
	// Opted out. Only copies of names this configuration syncs are removed: a copy under another
	// name belongs to an entry an admin removed, or to another installation.
	r.forgetNamespace(ns.Name)
	for _, e := range r.entries {
		if c := ownedByName[e.Name]; c != nil {
			errs = append(errs, r.removeCopy(ctx, &ns, c))
		}
	}
	return reconcile.Result{}, errors.Join(errs...)
}

// EnsureCopies creates the namespace's missing copies now. The admission handler calls it so a
// task pod admitted right after its namespace opted in never references a missing Secret.
func (r *Reconciler) EnsureCopies(ctx context.Context, namespace string) error {
	if len(r.entries) == 0 || r.excluded[namespace] {
		return nil
	}
	var errs []error
	var ns *corev1.Namespace
	for _, e := range r.entries {
		var existing corev1.Secret
		err := r.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: e.Name}, &existing)
		if err == nil {
			continue // our copy is there (the cache holds only ours)
		}
		if !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		if r.recentConflict(namespace, e.Name) {
			// Someone else's Secret holds the name; the pod uses it. Without this, every pod
			// in that namespace would cost a live API read on the admission path.
			continue
		}
		if ns == nil {
			ns = &corev1.Namespace{}
			if err := r.client.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
				return err
			}
		}
		errs = append(errs, r.syncCopy(ctx, ns, e, nil))
	}
	return errors.Join(errs...)
}

// HasSyncedSecrets reports whether any entry has a source, so admission may create copies.
func (r *Reconciler) HasSyncedSecrets() bool { return len(r.entries) > 0 }

// syncCopy makes the namespace's copy for one entry match its source. existing is our copy as
// cached, nil when the cache has none.
func (r *Reconciler) syncCopy(ctx context.Context, ns *corev1.Namespace, e config.PullSecret, existing *corev1.Secret) error {
	log := r.log.WithValues("namespace", ns.Name, "secret", e.Name, "source", e.Source.String())
	src, err := r.source(ctx, ns, e, log)
	if err != nil || src == nil {
		return err // a missing or invalid source was reported; existing copies stay as they are
	}
	desired := desiredCopy(ns.Name, e, src)
	key := []byte(src.UID)

	if existing == nil {
		// Not in our cache: the name may be free, or held by a Secret we do not own, or our copy
		// may have been created a moment ago. Only the API server can tell.
		var live corev1.Secret
		err := r.live.Get(ctx, client.ObjectKeyFromObject(desired), &live)
		switch {
		case apierrors.IsNotFound(err):
			return r.create(ctx, ns, desired, log)
		case err != nil:
			r.metrics.observe(resultError)
			return err
		case !isOurs(&live):
			r.reportConflict(ns, e.Name, log)
			return nil
		}
		existing = &live
	}
	r.resolveConflict(ns.Name, e.Name)
	if upToDate(key, existing, desired) {
		r.metrics.observe(resultUnchanged)
		return nil
	}
	return r.update(ctx, existing, desired, log)
}

// source returns the entry's source Secret, or nil after reporting why it cannot be used.
func (r *Reconciler) source(ctx context.Context, ns *corev1.Namespace, e config.PullSecret, log logr.Logger) (*corev1.Secret, error) {
	var src corev1.Secret
	err := r.client.Get(ctx, client.ObjectKey{Namespace: e.Source.Namespace, Name: e.Source.Name}, &src)
	switch {
	case apierrors.IsNotFound(err):
		r.reportUnusable(ctx, e, resultSourceMissing, "SourceSecretMissing",
			fmt.Sprintf("Source Secret %s not found; existing copies are kept as they are", e.Source), log)
		return nil, nil
	case err != nil:
		r.metrics.observe(resultError)
		return nil, err
	case !validSourceType(src.Type):
		r.reportUnusable(ctx, e, resultSourceInvalid, "SourceSecretInvalidType",
			fmt.Sprintf("Source Secret %s has type %s; only %s and %s are copied", e.Source, src.Type,
				corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg), log)
		return nil, nil
	}
	r.sourceUsable(e)
	return &src, nil
}

func (r *Reconciler) create(ctx context.Context, ns *corev1.Namespace, desired *corev1.Secret, log logr.Logger) error {
	// Create, not apply: it fails if a Secret of that name appeared in the meantime, so a
	// Secret we do not own can never be merged into.
	if err := r.client.Create(ctx, desired, client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Another replica's admission path, or the leader, created it a moment ago; or
			// someone else took the name. Look again rather than report a false error.
			var live corev1.Secret
			if getErr := r.live.Get(ctx, client.ObjectKeyFromObject(desired), &live); getErr != nil {
				return fmt.Errorf("secret %s/%s appeared while creating it: %w", desired.Namespace, desired.Name, getErr)
			}
			if !isOurs(&live) {
				r.reportConflict(ns, desired.Name, log)
			}
			return nil
		}
		r.metrics.observe(resultError)
		return fmt.Errorf("creating secret %s/%s: %w", desired.Namespace, desired.Name, err)
	}
	log.Info("Created Secret copy")
	r.metrics.observe(resultCreated)
	r.events.Eventf(desired, ns, corev1.EventTypeNormal, "Created", "Sync", "Copied registry Secret from %s", desired.Annotations[SourceAnnotation])
	return nil
}

func (r *Reconciler) update(ctx context.Context, existing, desired *corev1.Secret, log logr.Logger) error {
	if existing.Type != desired.Type {
		// A Secret's type is immutable: replace the copy. This is the one case with a moment
		// without a copy, and it happens only when the source itself changed type.
		if err := r.client.Delete(ctx, existing, client.Preconditions{UID: &existing.UID, ResourceVersion: &existing.ResourceVersion}); err != nil {
			r.metrics.observe(resultError)
			return fmt.Errorf("replacing secret %s/%s of type %s: %w", existing.Namespace, existing.Name, existing.Type, err)
		}
		return fmt.Errorf("secret %s/%s deleted to change its type; it is recreated on retry", existing.Namespace, existing.Name)
	}
	// Update carries the resourceVersion we checked, so it fails rather than overwrite a Secret
	// that changed hands since. It replaces the data whole, which also removes keys someone added.
	next := withDesired(existing, desired)
	if err := r.client.Update(ctx, next, client.FieldOwner(FieldManager)); err != nil {
		r.metrics.observe(resultError)
		return fmt.Errorf("updating secret %s/%s: %w", existing.Namespace, existing.Name, err)
	}
	log.Info("Updated Secret copy")
	r.metrics.observe(resultUpdated)
	r.observeRotation(desired.Annotations[HashAnnotation])
	r.events.Eventf(next, nil, corev1.EventTypeNormal, "Updated", "Sync", "Updated registry Secret from %s", desired.Annotations[SourceAnnotation])
	return nil
}

// removeCopy deletes our copy from a namespace that no longer wants it, unless the policy is to
// retain it. The preconditions make sure it is still the very copy we read.
func (r *Reconciler) removeCopy(ctx context.Context, ns *corev1.Namespace, c *corev1.Secret) error {
	if r.onOptOut == config.OptOutRetain || ns.DeletionTimestamp != nil {
		r.metrics.observe(resultRetained) // a terminating namespace takes its Secrets with it
		return nil
	}
	err := r.client.Delete(ctx, c, client.Preconditions{UID: &c.UID, ResourceVersion: &c.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) {
		r.metrics.observe(resultError)
		return fmt.Errorf("deleting secret %s/%s: %w", c.Namespace, c.Name, err)
	}
	r.log.Info("Deleted Secret copy", "namespace", c.Namespace, "secret", c.Name, "reason", "namespace opted out")
	r.metrics.observe(resultDeleted)
	return nil
}

func (r *Reconciler) reportConflict(ns *corev1.Namespace, name string, log logr.Logger) {
	r.metrics.observe(resultConflict)
	key := types.NamespacedName{Namespace: ns.Name, Name: name}
	r.mu.Lock()
	_, known := r.conflicts[key]
	first := !known
	r.conflicts[key] = time.Now()
	r.metrics.setConflicts(len(r.conflicts))
	r.mu.Unlock()
	if first {
		log.Info("Left Secret untouched: a Secret of that name exists and is not managed by taskpod-webhook")
		r.events.Eventf(ns, nil, corev1.EventTypeWarning, "SecretConflict", "Sync",
			"Secret %s exists and is not managed by taskpod-webhook; it is left untouched and pods still reference it", name)
	}
}

// conflictRecheck is how long admission trusts a seen conflict before looking at the API again.
const conflictRecheck = time.Minute

func (r *Reconciler) recentConflict(ns, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, ok := r.conflicts[types.NamespacedName{Namespace: ns, Name: name}]
	return ok && time.Since(seen) < conflictRecheck
}

func (r *Reconciler) resolveConflict(ns, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conflicts, types.NamespacedName{Namespace: ns, Name: name})
	r.metrics.setConflicts(len(r.conflicts))
}

func (r *Reconciler) forgetNamespace(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.conflicts {
		if k.Namespace == ns {
			delete(r.conflicts, k)
		}
	}
	r.metrics.setConflicts(len(r.conflicts))
}

// reportUnusable reports a missing or invalid source once, not once per namespace: the source's
// own watch brings every namespace back when it is fixed, so there is nothing to retry.
func (r *Reconciler) reportUnusable(ctx context.Context, e config.PullSecret, result, reason, msg string, log logr.Logger) {
	r.metrics.observe(result)
	src := e.Source.String()
	r.mu.Lock()
	first := r.unusable[src] != reason
	r.unusable[src] = reason
	r.mu.Unlock()
	r.metrics.setUnusable(src, true)
	if !first {
		return
	}
	log.Info("Source Secret unusable; copies kept as they are", "reason", reason)
	var srcNS corev1.Namespace
	if err := r.client.Get(ctx, client.ObjectKey{Name: e.Source.Namespace}, &srcNS); err == nil {
		r.events.Eventf(&srcNS, nil, corev1.EventTypeWarning, reason, "Sync", "%s", msg)
	}
}

func (r *Reconciler) sourceUsable(e config.PullSecret) {
	src := e.Source.String()
	r.mu.Lock()
	_, was := r.unusable[src]
	delete(r.unusable, src)
	r.mu.Unlock()
	if was {
		r.log.Info("Source Secret usable again; sync resumed", "source", src)
		r.metrics.setUnusable(src, false)
	}
}

func (r *Reconciler) observeRotation(hash string) {
	r.mu.Lock()
	at, ok := r.seen[hash]
	r.mu.Unlock()
	if ok {
		r.metrics.rotationLag.Observe(time.Since(at).Seconds())
	}
}

// The metric helpers tolerate a nil *Metrics so that tests may leave metrics out.
func (m *Metrics) observe(result string) {
	if m != nil {
		m.syncs.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) setConflicts(n int) {
	if m != nil {
		m.conflicts.Set(float64(n))
	}
}

func (m *Metrics) setUnusable(src string, unusable bool) {
	if m == nil {
		return
	}
	v := 0.0
	if unusable {
		v = 1
	}
	m.sourceMissing.WithLabelValues(src).Set(v)
}
