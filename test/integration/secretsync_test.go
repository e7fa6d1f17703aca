package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/taskpod/taskpod-webhook/test/harness"
	"github.com/taskpod/taskpod-webhook/webhook/app"
	"github.com/taskpod/taskpod-webhook/webhook/config"
	"github.com/taskpod/taskpod-webhook/webhook/registration"
	"github.com/taskpod/taskpod-webhook/webhook/secretsync"
)

const (
	wait    = 20 * time.Second
	tick    = 25 * time.Millisecond
	dockerK = corev1.DockerConfigJsonKey
)

// registrySecret is a dockerconfigjson Secret whose content differs per version.
func registrySecret(ns, name, version string) *corev1.Secret {
	auth := base64.StdEncoding.EncodeToString([]byte("robot:" + version))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{dockerK: []byte(`{"auths":{"registry":{"auth":"` + auth + `"}}}`)},
	}
}

func getSecret(t *testing.T, ns, name string) (*corev1.Secret, error) {
	t.Helper()
	var s corev1.Secret
	err := cp.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s)
	return &s, err
}

// waitForCopy waits until the namespace holds our copy with the source's current content.
func waitForCopy(t *testing.T, ns, name string, src *corev1.Secret) *corev1.Secret {
	t.Helper()
	var got *corev1.Secret
	require.Eventually(t, func() bool {
		s, err := getSecret(t, ns, name)
		if err != nil || string(s.Data[dockerK]) != string(src.Data[dockerK]) {
			return false
		}
		got = s
		return true
	}, wait, tick, "copy %s/%s never matched its source", ns, name)
	require.Equal(t, src.Type, got.Type)
	require.Equal(t, secretsync.ManagedByValue, got.Labels[secretsync.ManagedByLabel])
	require.Equal(t, src.Namespace+"/"+src.Name, got.Annotations[secretsync.SourceAnnotation])
	require.Regexp(t, "^hmac-sha256:[0-9a-f]{64}$", got.Annotations[secretsync.HashAnnotation])
	for k, v := range got.Annotations {
		require.NotContains(t, v, string(src.Data[dockerK]), "annotation %s must not carry secret data", k)
	}
	return got
}

func sharedSource(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := getSecret(t, ownNamespace, "registry-credentials")
	require.NoError(t, err)
	return s
}

// waitForEvent waits for an events.k8s.io Event with reason about the named object.
func waitForEvent(t *testing.T, kind, name, reason string) *eventsv1.Event {
	t.Helper()
	var found *eventsv1.Event
	require.Eventually(t, func() bool {
		var list eventsv1.EventList
		if err := cp.Client.List(context.Background(), &list); err != nil {
			return false
		}
		for i := range list.Items {
			e := &list.Items[i]
			if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Reason == reason {
				found = e
				return true
			}
		}
		return false
	}, wait, tick, "no %s event for %s %s", reason, kind, name)
	return found
}

func TestCopyCreatedOnOptIn(t *testing.T) {
	before := gauge(t, webhook, "taskpod_webhook_managed_secret_copies")
	ns := newNamespace(t, optIn)
	waitForCopy(t, ns, "registry-credentials", sharedSource(t))
	waitForEvent(t, "Secret", "registry-credentials", "Created")
	require.Eventually(t, func() bool { return gauge(t, webhook, "taskpod_webhook_managed_secret_copies") > before }, wait, tick,
		"the managed-copies metric counts the new copy")
}

func TestNoCopyWithoutOptIn(t *testing.T) {
	ns := newNamespace(t, map[string]string{"team": "web"})
	optedIn := newNamespace(t, optIn)
	waitForCopy(t, optedIn, "registry-credentials", sharedSource(t)) // the loop has run since
	_, err := getSecret(t, ns, "registry-credentials")
	require.True(t, apierrors.IsNotFound(err), "got %v", err)
}

// TestRotationReachesEveryCopyWithoutGap watches the copies while the source rotates: every
// copy must reach the new content, and no copy may be deleted or empty on the way.
func TestRotationReachesEveryCopyWithoutGap(t *testing.T) {
	ctx := context.Background()
	var namespaces []string
	for range 5 {
		ns := newNamespace(t, optIn)
		waitForCopy(t, ns, "registry-credentials", sharedSource(t))
		namespaces = append(namespaces, ns)
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	require.NoError(t, err)
	w, err := cs.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{LabelSelector: secretsync.ManagedByLabel + "=" + secretsync.ManagedByValue})
	require.NoError(t, err)
	defer w.Stop()

	src := sharedSource(t)
	rotated := registrySecret(ownNamespace, "registry-credentials", fmt.Sprintf("rotated-%d", time.Now().UnixNano()))
	src.Data = rotated.Data
	require.NoError(t, cp.Client.Update(ctx, src))

	pending := map[string]bool{}
	for _, ns := range namespaces {
		pending[ns] = true
	}
	deadline := time.After(wait)
	for len(pending) > 0 {
		select {
		case ev := <-w.ResultChan():
			s, ok := ev.Object.(*corev1.Secret)
			require.True(t, ok, "watch event %v", ev.Type)
			require.NotEqual(t, watch.Deleted, ev.Type, "copy %s/%s deleted during rotation", s.Namespace, s.Name)
			require.NotEmpty(t, s.Data[dockerK], "copy %s/%s empty during rotation", s.Namespace, s.Name)
			if string(s.Data[dockerK]) == string(rotated.Data[dockerK]) {
				delete(pending, s.Namespace)
			}
		case <-deadline:
			t.Fatalf("rotation did not reach %v", pending)
		}
	}
	for _, ns := range namespaces {
		waitForCopy(t, ns, "registry-credentials", src)
	}
	require.Positive(t, histogramCount(t, webhook, "taskpod_webhook_secret_rotation_lag_seconds"), "rotation lag observed")
}

// histogramCount reads how many observations a histogram holds.
func histogramCount(t *testing.T, w *harness.Webhook, name string) uint64 {
	t.Helper()
	families, err := w.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func TestDeletedCopyIsRestored(t *testing.T) {
	ns := newNamespace(t, optIn)
	first := waitForCopy(t, ns, "registry-credentials", sharedSource(t))
	require.NoError(t, cp.Client.Delete(context.Background(), first))
	require.Eventually(t, func() bool {
		s, err := getSecret(t, ns, "registry-credentials")
		return err == nil && s.UID != first.UID
	}, wait, tick)
	waitForCopy(t, ns, "registry-credentials", sharedSource(t))
}

func TestEditedCopyIsRestored(t *testing.T) {
	ns := newNamespace(t, optIn)
	c := waitForCopy(t, ns, "registry-credentials", sharedSource(t))
	c.Data[dockerK] = []byte(`{"auths":{}}`)
	c.Data["extra"] = []byte("added by hand")
	require.NoError(t, cp.Client.Update(context.Background(), c))
	require.Eventually(t, func() bool {
		s, err := getSecret(t, ns, "registry-credentials")
		return err == nil && len(s.Data) == 1 && string(s.Data[dockerK]) == string(sharedSource(t).Data[dockerK])
	}, wait, tick, "the edit, including the added key, must be undone")
}

func TestUnmanagedSecretOfTheSameNameIsNeverTouched(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	theirs := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials", Namespace: ns, Labels: map[string]string{"owner": "team"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"token": []byte("theirs")},
	}
	require.NoError(t, cp.Client.Create(ctx, theirs))
	optInNamespace(t, ns)

	waitForEvent(t, "Namespace", ns, "SecretConflict")
	after, err := getSecret(t, ns, "registry-credentials")
	require.NoError(t, err)
	require.Equal(t, theirs.ResourceVersion, after.ResourceVersion, "never modified")
	require.Equal(t, "theirs", string(after.Data["token"]))
	require.Positive(t, gauge(t, webhook, "taskpod_webhook_secret_conflicts"))

	// The webhook still injects the name: the pod uses their Secret.
	stored := create(t, taskPod(ns))
	require.Equal(t, []corev1.LocalObjectReference{{Name: "registry-credentials"}}, stored.Spec.ImagePullSecrets)

	// Opting out never deletes it either.
	optOutNamespace(t, ns)
	time.Sleep(500 * time.Millisecond)
	after, err = getSecret(t, ns, "registry-credentials")
	require.NoError(t, err)
	require.Equal(t, theirs.ResourceVersion, after.ResourceVersion)
}

func TestOptOutDeletesOurCopy(t *testing.T) {
	ns := newNamespace(t, optIn)
	waitForCopy(t, ns, "registry-credentials", sharedSource(t))
	optOutNamespace(t, ns)
	require.Eventually(t, func() bool {
		_, err := getSecret(t, ns, "registry-credentials")
		return apierrors.IsNotFound(err)
	}, wait, tick)
}

func TestCacheHoldsNoUnrelatedSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, optIn)
	for i := range 50 {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Namespace: ns},
			Data: map[string][]byte{"k": []byte("v")}}
		require.NoError(t, cp.Client.Create(ctx, s))
	}
	waitForCopy(t, ns, "registry-credentials", sharedSource(t))

	var cached corev1.SecretList
	require.NoError(t, webhook.Manager.GetCache().List(ctx, &cached))
	var live corev1.SecretList
	require.NoError(t, cp.Client.List(ctx, &live))
	require.Greater(t, len(live.Items), len(cached.Items)+49)
	for _, s := range cached.Items {
		isSource := s.Namespace == ownNamespace && s.Name == "registry-credentials"
		require.True(t, isSource || s.Labels[secretsync.ManagedByLabel] == secretsync.ManagedByValue,
			"cache holds unrelated Secret %s/%s", s.Namespace, s.Name)
	}
}

func optInNamespace(t *testing.T, ns string) {
	t.Helper()
	setNamespaceLabel(t, ns, "taskpod.io/inject", "enabled")
}

func optOutNamespace(t *testing.T, ns string) {
	t.Helper()
	setNamespaceLabel(t, ns, "taskpod.io/inject", "")
}

func setNamespaceLabel(t *testing.T, name, key, value string) {
	t.Helper()
	ctx := context.Background()
	var ns corev1.Namespace
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKey{Name: name}, &ns))
	patch := client.MergeFrom(ns.DeepCopy())
	if value == "" {
		delete(ns.Labels, key)
	} else {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[key] = value
	}
	require.NoError(t, cp.Client.Patch(ctx, &ns, patch))
}

// gauge reads a metric without labels (or the sum over its series) from an instance's registry.
func gauge(t *testing.T, w *harness.Webhook, name string) float64 {
	t.Helper()
	families, err := w.Registry.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return total
}

// syncCount reads taskpod_webhook_secret_sync_total for one result.
func syncCount(t *testing.T, w *harness.Webhook, result string) float64 {
	t.Helper()
	families, err := w.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "taskpod_webhook_secret_sync_total" {
			for _, m := range f.GetMetric() {
				if labelValue(m, "result") == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// private runs a separate instance for one test, with its own configuration, opt-in label and
// port, so that tests which break sources or change policy cannot disturb the shared one.
type private struct {
	cfg                    *config.Config
	label                  string
	copy, source, instance string
}

func newPrivate(t *testing.T, base, extra string) *private {
	t.Helper()
	name := fmt.Sprintf("%s%d", base, nsCounter.Add(1)) // unique, so tests may run again (-count)
	label := "sync-test/" + name
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
namespaces: {selector: {matchLabels: {%s: "on"}}}
imagePullSecrets:
- name: %s-creds
  source: {namespace: %s, name: %s-source}
%s`, label, name, ownNamespace, name, extra)))
	require.NoError(t, err)
	return &private{cfg: cfg, label: label, copy: name + "-creds", source: name + "-source", instance: name}
}

func (p *private) run(t *testing.T, mods ...func(*app.Options)) *harness.Webhook {
	t.Helper()
	port, err := harness.FreePort()
	require.NoError(t, err)
	mods = append([]func(*app.Options){func(o *app.Options) {
		o.WebhookPort = port
		o.ExcludeNamespaces = append(o.ExcludeNamespaces, ownNamespace)
	}}, mods...)
	w, err := cp.RunWebhook(context.Background(), p.cfg, zap.New(zap.Level(zapLevel())), mods...)
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	return w
}

// start creates the instance's source Secret and runs the instance.
func (p *private) start(t *testing.T, mods ...func(*app.Options)) (*corev1.Secret, *harness.Webhook) {
	t.Helper()
	src := registrySecret(ownNamespace, p.source, "v1")
	require.NoError(t, cp.Client.Create(context.Background(), src))
	return src, p.run(t, mods...)
}

func (p *private) namespace(t *testing.T) string {
	t.Helper()
	return newNamespace(t, map[string]string{p.label: "on"})
}

func TestOptOutRetainKeepsOurCopy(t *testing.T) {
	p := newPrivate(t, "retain", "secretSync: {onOptOut: retain}")
	src, w := p.start(t)
	ns := p.namespace(t)
	c := waitForCopy(t, ns, p.copy, src)
	before := syncCount(t, w, "retained")
	setNamespaceLabel(t, ns, p.label, "")
	require.Eventually(t, func() bool { return syncCount(t, w, "retained") > before }, wait, tick,
		"the loop must have seen the opt-out and decided to retain")
	after, err := getSecret(t, ns, p.copy)
	require.NoError(t, err, "retain keeps the copy")
	require.Equal(t, c.UID, after.UID)
}

func TestMissingSourceKeepsCopiesAndResumes(t *testing.T) {
	ctx := context.Background()
	p := newPrivate(t, "volatile", "")
	src, w := p.start(t)
	ns1, ns2 := p.namespace(t), p.namespace(t)
	c1 := waitForCopy(t, ns1, p.copy, src)
	waitForCopy(t, ns2, p.copy, src)

	require.NoError(t, cp.Client.Delete(ctx, src))
	waitForEvent(t, "Namespace", ownNamespace, "SourceSecretMissing")
	require.Eventually(t, func() bool { return gauge(t, w, "taskpod_webhook_source_secret_unusable") == 1 }, wait, tick)
	// A namespace opting in meanwhile gets nothing, and nothing loops hot.
	ns3 := p.namespace(t)
	before := syncCount(t, w, "source_missing")
	time.Sleep(time.Second)
	require.Less(t, syncCount(t, w, "source_missing")-before, 10.0, "a missing source must not be retried in a hot loop")
	after, err := getSecret(t, ns1, p.copy)
	require.NoError(t, err, "copies are kept when the source disappears")
	require.Equal(t, c1.ResourceVersion, after.ResourceVersion)

	back := registrySecret(ownNamespace, p.source, "v2")
	require.NoError(t, cp.Client.Create(ctx, back))
	for _, ns := range []string{ns1, ns2, ns3} {
		waitForCopy(t, ns, p.copy, back)
	}
	require.Eventually(t, func() bool { return gauge(t, w, "taskpod_webhook_source_secret_unusable") == 0 }, wait, tick)
}

func TestSourceOfTheWrongTypeIsRefused(t *testing.T) {
	ctx := context.Background()
	p := newPrivate(t, "opaque", "")
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: p.source, Namespace: ownNamespace},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("hunter2")}}
	require.NoError(t, cp.Client.Create(ctx, src))
	p.run(t)
	ns := p.namespace(t)
	ev := waitForEvent(t, "Namespace", ownNamespace, "SourceSecretInvalidType")
	require.Contains(t, ev.Note, "has type Opaque")
	require.NotContains(t, ev.Note, "hunter2")
	_, err := getSecret(t, ns, p.copy)
	require.True(t, apierrors.IsNotFound(err), "got %v", err)
}

// TestAdmissionCreatesTheCopy runs an instance whose sync loop can never run (another holder
// owns its leader lease), so any copy that appears was made by the admission path itself.
func TestAdmissionCreatesTheCopyButNotOnDryRun(t *testing.T) {
	ctx := context.Background()
	p := newPrivate(t, "admit", "")
	src := registrySecret(ownNamespace, p.source, "v1")
	require.NoError(t, cp.Client.Create(ctx, src))
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: p.instance, Namespace: ownNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("someone-else"), LeaseDurationSeconds: ptr.To[int32](3600),
			RenewTime: &metav1.MicroTime{Time: time.Now()}, AcquireTime: &metav1.MicroTime{Time: time.Now()}},
	}
	require.NoError(t, cp.Client.Create(ctx, lease))
	w := p.run(t, func(o *app.Options) {
		o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNS = true, p.instance, ownNamespace
	})
	o := cp.WebhookOptions(ownNamespace)
	o.Name, o.URL = p.instance, w.URL()
	require.NoError(t, cp.InstallWebhook(ctx, p.cfg, o))
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, registration.Mutating(p.cfg, o)) })
	require.NoError(t, cp.CreateNamespace(ctx, p.instance, map[string]string{p.label: "on"}))
	require.NoError(t, cp.WaitUntilCalled(ctx, p.instance, kpoLabels))

	ns := p.namespace(t)
	pod := taskPod(ns)
	require.NoError(t, cp.Client.Create(ctx, pod, client.DryRunAll))
	require.Contains(t, pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: p.copy})
	_, err := getSecret(t, ns, p.copy)
	require.True(t, apierrors.IsNotFound(err), "a dry-run must create nothing, got %v", err)

	stored := create(t, taskPod(ns)) // the copy must exist the moment the pod is admitted
	require.Contains(t, stored.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: p.copy})
	c, err := getSecret(t, ns, p.copy)
	require.NoError(t, err, "admission must create the copy before answering")
	require.Equal(t, string(src.Data[dockerK]), string(c.Data[dockerK]))
	require.Zero(t, syncCount(t, w, "unchanged")+syncCount(t, w, "updated"), "the sync loop never ran")
}

func TestTwoReplicasWithLeaderElectionDoNotFight(t *testing.T) {
	ctx := context.Background()
	p := newPrivate(t, "ha", "")
	src := registrySecret(ownNamespace, p.source, "v1")
	require.NoError(t, cp.Client.Create(ctx, src))
	elect := func(o *app.Options) {
		o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNS = true, p.instance, ownNamespace
	}
	a, b := p.run(t, elect), p.run(t, elect)
	var namespaces []string
	for range 3 {
		namespaces = append(namespaces, p.namespace(t))
	}
	for _, ns := range namespaces {
		waitForCopy(t, ns, p.copy, src)
	}
	rotated := registrySecret(ownNamespace, p.source, "v2")
	src.Data = rotated.Data
	require.NoError(t, cp.Client.Update(ctx, src))
	for _, ns := range namespaces {
		waitForCopy(t, ns, p.copy, src)
	}
	writes := func(w *harness.Webhook) float64 { return syncCount(t, w, "created") + syncCount(t, w, "updated") }
	require.Equal(t, float64(2*len(namespaces)), writes(a)+writes(b), "each copy created once and updated once")
	require.True(t, writes(a) == 0 || writes(b) == 0, "only the leader writes: a=%v b=%v", writes(a), writes(b))

	// Settled: nobody keeps rewriting.
	rv := map[string]string{}
	for _, ns := range namespaces {
		s, _ := getSecret(t, ns, p.copy)
		rv[ns] = s.ResourceVersion
	}
	time.Sleep(time.Second)
	for _, ns := range namespaces {
		s, _ := getSecret(t, ns, p.copy)
		require.Equal(t, rv[ns], s.ResourceVersion, "copy in %s rewritten while nothing changed", ns)
	}
}

func TestRestartLeavesNoDuplicatesOrOrphans(t *testing.T) {
	ctx := context.Background()
	p := newPrivate(t, "restart", "")
	src, first := p.start(t)
	stay, leave := p.namespace(t), p.namespace(t)
	kept := waitForCopy(t, stay, p.copy, src)
	waitForCopy(t, leave, p.copy, src)
	first.Stop()

	setNamespaceLabel(t, leave, p.label, "") // opts out while nothing runs
	second := p.run(t)
	require.Eventually(t, func() bool {
		_, err := getSecret(t, leave, p.copy)
		return apierrors.IsNotFound(err)
	}, wait, tick, "the copy of a namespace that opted out meanwhile is removed")
	again, err := getSecret(t, stay, p.copy)
	require.NoError(t, err)
	require.Equal(t, kept.UID, again.UID, "not recreated")
	require.Equal(t, kept.ResourceVersion, again.ResourceVersion, "not rewritten")
	var all corev1.SecretList
	require.NoError(t, cp.Client.List(ctx, &all, client.MatchingLabels{secretsync.ManagedByLabel: secretsync.ManagedByValue},
		client.MatchingFields{"metadata.name": p.copy}))
	require.Len(t, all.Items, 1)
	require.Zero(t, syncCount(t, second, "created")+syncCount(t, second, "updated"))
}
