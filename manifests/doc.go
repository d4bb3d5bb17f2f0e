// Package manifests owns cairn's API kinds (cairn.dev/v1alpha1): their Go
// types, strict YAML decoding with file:line errors, validation, reference
// resolution and the immutable per-commit Snapshot every later stage reads.
//
// Load and LoadDir read the *.yaml and *.yml files under a repository's
// manifests/ folder (or the whole repository but policies/ when it has
// none), decode every document strictly (unknown fields, wrong types and
// duplicate keys are errors), check values and references, and report every
// problem at once as an ErrorList of "file:line: Kind/name: field: message".
// Hostile input (files over MaxFileSize, nesting over MaxDepth, more than
// MaxNodes nodes, alias bombs) is refused before it costs memory.
//
// It imports no other cairn package.
package manifests
