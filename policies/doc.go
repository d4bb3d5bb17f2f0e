// Package policies evaluates Rego admission policies for cairn Releases: the
// repository's own policies/*.rego, and the built-in library embedded in the
// binary (digest-pinned, allowed-registries, require-evaluation, fits-device,
// dataset-license, promotion). It defines the input document (see README.md)
// and runs the Rego unit tests of both.
package policies
