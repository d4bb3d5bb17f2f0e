// Package gitops holds the example GitOps repository of the bearing anomaly
// model (manifests/ and policies/) and tests that cairn accepts it.
package gitops
