// Package secretsync keeps a copy of each registry Secret in every namespace that opted in:
// created on opt-in, updated in place when the source rotates, restored when deleted or edited,
// and removed (or retained, by policy) when the namespace opts out.
//
// It reconciles one namespace at a time. It only ever writes Secrets that carry its
// managed-by label, it never writes the source, and it never deletes a copy because the
// source is missing.
package secretsync
