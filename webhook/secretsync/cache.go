package secretsync

import (
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/taskpod/taskpod-webhook/webhook/config"
)

// CacheConfig scopes the Secret informers to what the sync loop reads: our own copies (by label,
// in every namespace) and the sources. A source namespace holding one source is watched for that
// one Secret only; one holding several is watched whole (field selectors cannot OR names). The
// cluster's other Secrets are never listed into memory.
func CacheConfig(cfg *config.Config) cache.ByObject {
	managed := labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue})
	namespaces := map[string]cache.Config{cache.AllNamespaces: {LabelSelector: managed}}
	names := map[string][]string{}
	for _, e := range cfg.SyncedSecrets() {
		names[e.Source.Namespace] = appendUnique(names[e.Source.Namespace], e.Source.Name)
	}
	for ns, n := range names {
		c := cache.Config{}
		if len(n) == 1 {
			c.FieldSelector = fields.OneTermEqualSelector("metadata.name", n[0])
		}
		namespaces[ns] = c
	}
	return cache.ByObject{Namespaces: namespaces}
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
