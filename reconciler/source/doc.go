// Package source fetches a Git repository's branch with go-git — on an
// interval with jitter and whenever a signed webhook (GitHub, GitLab or
// generic) arrives — and hands each new commit's tree to the reconciler as
// an fs.FS.
package source
