package secretsync

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// racingLive answers NotFound first (the name looks free), then the Secret that won the race.
type racingLive struct {
	winner *corev1.Secret
	calls  int
}

func (l *racingLive) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	l.calls++
	if l.calls == 1 {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	l.winner.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func (l *racingLive) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// TestCreateRaceIsNotAnError: when another replica creates the copy between our look and our
// Create, the AlreadyExists is resolved by looking again; a winner we do not own is a conflict.
func TestCreateRaceIsNotAnError(t *testing.T) {
	cfg, err := config.Parse([]byte("imagePullSecrets: [{name: registry-credentials, source: {namespace: taskpod-system, name: registry-credentials}}]\n"))
	require.NoError(t, err)
	src := source("1", `{"auths":{}}`)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "airflow", Labels: map[string]string{"taskpod.io/inject": "enabled"}}}

	for name, tc := range map[string]struct {
		winner       *corev1.Secret
		wantConflict bool
	}{
		"another replica made our copy": {winner: desiredCopy("airflow", entry(), src)},
		"someone else took the name": {winner: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials", Namespace: "airflow"}},
			wantConflict: true},
	} {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(src, ns).WithInterceptorFuncs(interceptor.Funcs{
				Create: func(ctx context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
					return apierrors.NewAlreadyExists(schema.GroupResource{Resource: "secrets"}, obj.GetName())
				},
			}).Build()
			r := New(Options{Client: c, Live: &racingLive{winner: tc.winner}, Config: cfg, Events: events.NewFakeRecorder(10), Log: logr.Discard()})
			require.NoError(t, r.EnsureCopies(context.Background(), "airflow"))
			require.Equal(t, tc.wantConflict, len(r.conflicts) == 1)
		})
	}
}

// countingLive counts reads that reach the API server.
type countingLive struct {
	client.Reader
	gets int
}

func (l *countingLive) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	l.gets++
	return l.Reader.Get(ctx, key, obj, opts...)
}

// TestConflictCostsOneLiveRead: in a namespace where someone else's Secret holds the name, the
// admission path reads the API once, not once per pod.
func TestConflictCostsOneLiveRead(t *testing.T) {
	cfg, err := config.Parse([]byte("imagePullSecrets: [{name: registry-credentials, source: {namespace: taskpod-system, name: registry-credentials}}]\n"))
	require.NoError(t, err)
	src := source("1", `{"auths":{}}`)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "airflow"}}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials", Namespace: "airflow"}}
	cache := fake.NewClientBuilder().WithObjects(src, ns).Build() // holds only ours: not theirs
	live := &countingLive{Reader: fake.NewClientBuilder().WithObjects(theirs).Build()}
	r := New(Options{Client: cache, Live: live, Config: cfg, Events: events.NewFakeRecorder(10), Log: logr.Discard()})
	for range 5 {
		require.NoError(t, r.EnsureCopies(context.Background(), "airflow"))
	}
	require.Equal(t, 1, live.gets)
	require.Len(t, r.conflicts, 1)
}
