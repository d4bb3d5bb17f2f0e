// Package manifests owns cairn's API kinds (cairn.dev/v1alpha1): their Go
// types, strict YAML decoding with file:line errors, validation, reference
// resolution and the immutable per-commit Snapshot every later stage reads.
// It imports no other cairn package.
package manifests
