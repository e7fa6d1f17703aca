package chart

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/taskpod/taskpod-webhook/test/harness"
	"github.com/taskpod/taskpod-webhook/webhook/app"
)

// asServiceAccount is a rest config that impersonates the chart's ServiceAccount.
func asServiceAccount(cp *harness.ControlPlane, ns, name string) *rest.Config {
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", ns, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// TestRBACIsSufficientAndMinimal runs the webhook and the sync loop under the chart's
// ServiceAccount: everything they do works, and what they never need is forbidden.
func TestRBACIsSufficientAndMinimal(t *testing.T) {
	ctx := context.Background()
	rel := uniqueRelease("rbac")
	ns := rel
	cp := controlPlane
	r := install(t, cp, rel, ns, `
certManager: {enabled: false}
config:
  namespaces: {selector: {matchLabels: {rbac-test: "on"}}}
  imagePullSecrets: [{name: rbac-creds, source: {name: rbac-source}}]
`)
	source := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "rbac-source", Namespace: ns},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	require.NoError(t, cp.Client.Create(ctx, source))

	sa := asServiceAccount(cp, ns, rel)
	port, err := harness.FreePort()
	require.NoError(t, err)
	// Starting at all proves list/watch on Namespaces, LimitRanges and Secrets: the caches must sync.
	w, err := cp.RunWebhookAs(ctx, sa, renderedConfig(t, r), logr.Discard(), func(o *app.Options) {
		o.WebhookPort = port
		o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNS = true, rel, ns
		o.ExcludeNamespaces = append(o.ExcludeNamespaces, ns)
	})
	require.NoError(t, err)
	t.Cleanup(w.Stop)

	// Leader election in the release namespace.
	require.Eventually(t, func() bool {
		var lease coordinationv1.Lease
		err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: rel}, &lease)
		return err == nil && lease.Spec.HolderIdentity != nil
	}, wait, tick, "the sync loop never became leader under the chart's RBAC")

	// Sync: create, update (rotation) and delete (opt-out) a copy, with Events.
	tasks := rel + "-tasks"
	require.NoError(t, cp.CreateNamespace(ctx, tasks, map[string]string{"rbac-test": "on"}))
	copyKey := client.ObjectKey{Namespace: tasks, Name: "rbac-creds"}
	require.Eventually(t, func() bool { return cp.Client.Get(ctx, copyKey, &corev1.Secret{}) == nil }, wait, tick, "copy not created")
	source.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"r":{}}}`)
	require.NoError(t, cp.Client.Update(ctx, source))
	require.Eventually(t, func() bool {
		var c corev1.Secret
		return cp.Client.Get(ctx, copyKey, &c) == nil && string(c.Data[corev1.DockerConfigJsonKey]) == `{"auths":{"r":{}}}`
	}, wait, tick, "copy not updated")
	require.Eventually(t, func() bool {
		var list eventsv1.EventList
		if cp.Client.List(ctx, &list, client.InNamespace(tasks)) != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Reason == "Created" && e.Regarding.Name == "rbac-creds" {
				return true
			}
		}
		return false
	}, wait, tick, "event not recorded")
	var nsObj corev1.Namespace
	require.NoError(t, cp.Client.Get(ctx, client.ObjectKey{Name: tasks}, &nsObj))
	patch := client.MergeFrom(nsObj.DeepCopy())
	delete(nsObj.Labels, "rbac-test")
	require.NoError(t, cp.Client.Patch(ctx, &nsObj, patch))
	require.Eventually(t, func() bool { return apierrors.IsNotFound(cp.Client.Get(ctx, copyKey, &corev1.Secret{})) }, wait, tick, "copy not deleted")

	// And nothing it does not need.
	as, err := client.New(sa, client.Options{})
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: tasks},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	require.NoError(t, cp.Client.Create(ctx, pod))
	forbidden := map[string]func() error{
		"list pods": func() error { return as.List(ctx, &corev1.PodList{}) },
		"update pods": func() error {
			p := pod.DeepCopy()
			p.Labels = map[string]string{"x": "y"}
			return as.Update(ctx, p, client.DryRunAll)
		},
		"delete pods":       func() error { return as.Delete(ctx, pod.DeepCopy(), client.DryRunAll) },
		"delete namespaces": func() error { return as.Delete(ctx, nsObj.DeepCopy(), client.DryRunAll) },
		"create configmaps": func() error {
			return as.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: tasks}}, client.DryRunAll)
		},
		"create clusterrolebindings": func() error {
			return as.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: rel, Namespace: ns}}}, client.DryRunAll)
		},
		"update its own ClusterRole": func() error {
			var role rbacv1.ClusterRole
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: rel}, &role); err != nil {
				return err
			}
			role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}})
			return as.Update(ctx, &role, client.DryRunAll)
		},
		"update webhook configurations": func() error {
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: rel}, &mwc); err != nil {
				return err
			}
			fail := admissionregistrationv1.Fail
			mwc.Webhooks[0].FailurePolicy = &fail
			return as.Update(ctx, &mwc, client.DryRunAll)
		},
		"create leases elsewhere": func() error {
			return as.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: tasks}}, client.DryRunAll)
		},
	}
	for what, try := range forbidden {
		err := try()
		require.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
	}
}

// TestNoSecretAccessWithoutSync shows that a release that syncs nothing cannot read Secrets at
// all, and that the webhook still starts under it.
func TestNoSecretAccessWithoutSync(t *testing.T) {
	ctx := context.Background()
	rel := uniqueRelease("nosync")
	ns := rel
	cp := controlPlane
	r := install(t, cp, rel, ns, "certManager: {enabled: false}\n")
	sa := asServiceAccount(cp, ns, rel)
	port, err := harness.FreePort()
	require.NoError(t, err)
	w, err := cp.RunWebhookAs(ctx, sa, renderedConfig(t, r), logr.Discard(), func(o *app.Options) { o.WebhookPort = port })
	require.NoError(t, err, "the webhook must start without any Secret access")
	t.Cleanup(w.Stop)
	as, err := client.New(sa, client.Options{})
	require.NoError(t, err)
	err = as.List(ctx, &corev1.SecretList{})
	require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
}
