package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Config says which repository and branch to follow.
type Config struct {
	// URL is a local path, file://, http(s):// or ssh:// URL.
	URL string
	// Branch defaults to main.
	Branch string
	// Dir is where the bare clone is kept.
	Dir string
	// Interval between fetches (default 1m); each wait has ±10% jitter.
	Interval time.Duration
	// Token authenticates http(s) fetches (as the password of user "git").
	Token string
	// CredentialsFile is an owner-only file holding the credential of
	// http(s) fetches, read on every fetch (ReadCredentials).
	CredentialsFile string
	// SSHKey is a private key file for ssh:// URLs.
	SSHKey string
	// FetchTimeout bounds one fetch, connection to tree (default 2m): a
	// server that accepts and never answers fails the fetch, not the loop.
	FetchTimeout time.Duration
	// WebhookSecret signs POST /hooks/git; empty accepts unsigned hooks
	// only from loopback.
	WebhookSecret string
	Logger        *slog.Logger
}

// Revision is one fetched commit and its tree.
type Revision struct {
	Commit  string
	Message string
	Author  string
	Time    time.Time
	// FS is the commit's tree (manifest, policy and data files: *.yaml,
	// *.yml, *.json, *.rego and *.md, up to MaxFileSize each).
	FS fs.FS
}

// MaxFileSize bounds a file read from the tree; bigger ones are left out
// (the manifest decoder refuses files far smaller).
const MaxFileSize = 32 << 20

// Source follows one branch of a repository.
type Source struct {
	cfg     Config
	log     *slog.Logger
	trigger chan struct{}

	// fetchMu serialises fetches (and the clone they write); it is held
	// across the network. mu guards the fields below it and is never held
	// across I/O, so State, URL and IsAncestor answer during a fetch.
	// user is the userinfo the configured URL carried (a token or user
	// and password), removed from cfg.URL so that it never reaches the
	// clone's config file or a log line: it is passed to go-git as auth.
	user *url.Userinfo

	fetchMu   sync.Mutex
	repo      *git.Repository
	mu        sync.Mutex
	last      string
	fetchedAt time.Time
	lastErr   error
}

// DefaultFetchTimeout bounds a fetch when Config.FetchTimeout is zero.
const DefaultFetchTimeout = 2 * time.Minute

// New returns a source; Run fetches.
func New(cfg Config) *Source {
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var user *url.Userinfo
	cfg.URL, user = splitUserinfo(cfg.URL)
	return &Source{cfg: cfg, log: cfg.Logger, trigger: make(chan struct{}, 1), user: user}
}

// splitUserinfo removes the credentials of an http(s) URL, returning the
// URL without them and them; ssh's user (git@) is no secret and stays.
func splitUserinfo(raw string) (string, *url.Userinfo) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return raw, nil
	}
	user := u.User
	u.User = nil
	return u.String(), user
}

// Redact hides the secret of a URL for logs and messages: a password by
// url.URL.Redacted, and a token given as the user of an http(s) URL as
// "redacted"; ssh's user (git@) is no secret. Anything that is not a URL
// with userinfo is returned as it is.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, hasPass := u.User.Password(); hasPass {
		return u.Redacted()
	}
	if u.Scheme != "ssh" {
		u.User = url.User("redacted")
	}
	return u.String()
}

// Trigger asks for a fetch now.
func (s *Source) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// State is what the source knows: the last fetched commit, when, and the
// last fetch error (nil after a good fetch).
func (s *Source) State() (commit string, fetchedAt time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.fetchedAt, s.lastErr
}

// URL returns the repository URL with any credentials removed.
func (s *Source) URL() string { return s.cfg.URL }

// Branch returns the branch followed.
func (s *Source) Branch() string { return s.cfg.Branch }

// Run fetches at once, then on every interval (with jitter) or trigger,
// calling onCommit for each new commit and onError for each failed fetch,
// until ctx ends. onCommit runs in Run's goroutine.
func (s *Source) Run(ctx context.Context, onCommit func(context.Context, Revision), onError func(error)) {
	for {
		rev, changed, err := s.Fetch(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("git fetch failed", "url", s.URL(), "branch", s.cfg.Branch, "err", err)
			if onError != nil {
				onError(err)
			}
		case changed:
			s.log.Info("new commit", "commit", rev.Commit, "branch", s.cfg.Branch)
			onCommit(ctx, rev)
		}
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(s.cfg.Interval))
		t := time.NewTimer(s.cfg.Interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.trigger:
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Source) auth() (transport.AuthMethod, error) {
	u := s.cfg.URL
	switch {
	case strings.HasPrefix(u, "http://"), strings.HasPrefix(u, "https://"):
		if s.cfg.CredentialsFile != "" {
			user, pass, err := ReadCredentials(s.cfg.CredentialsFile)
			if err != nil {
				return nil, err
			}
			return &githttp.BasicAuth{Username: user, Password: pass}, nil
		}
		if s.cfg.Token != "" {
			return &githttp.BasicAuth{Username: "git", Password: s.cfg.Token}, nil
		}
		if s.user != nil {
			// https://TOKEN@host (GitHub, GitLab) or https://user:password@host.
			name := s.user.Username()
			if pass, ok := s.user.Password(); ok {
				return &githttp.BasicAuth{Username: name, Password: pass}, nil
			}
			return &githttp.BasicAuth{Username: name}, nil
		}
	case strings.HasPrefix(u, "ssh://"), strings.Contains(u, "@") && !strings.Contains(u, "://"):
		if s.cfg.SSHKey != "" {
			a, err := gitssh.NewPublicKeysFromFile("git", s.cfg.SSHKey, "")
			if err != nil {
				return nil, fmt.Errorf("read ssh key %s: %w", s.cfg.SSHKey, err)
			}
			return a, nil
		}
	}
	return nil, nil
}

func (s *Source) refName() plumbing.ReferenceName {
	return plumbing.NewBranchReferenceName(s.cfg.Branch)
}

// open clones the repository into Dir unless it is there.
func (s *Source) open(ctx context.Context, auth transport.AuthMethod) (*git.Repository, error) {
	if s.repo != nil {
		return s.repo, nil
	}
	if r, err := git.PlainOpen(s.cfg.Dir); err == nil {
		if err := s.repoint(r); err != nil {
			return nil, err
		}
		s.repo = r
		return r, nil
	}
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("clone %s: %w", s.URL(), err)
	}
	r, err := git.PlainInit(s.cfg.Dir, true)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", s.URL(), err)
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}}); err != nil {
		return nil, fmt.Errorf("clone %s: %w", s.URL(), err)
	}
	s.repo = r
	return r, nil
}

// repoint makes the clone's origin the configured URL: a changed repo in
// the configuration takes effect on start. The objects fetched from the
// old URL stay (history shared with the new one is not fetched again); the
// branch read is always the configured one, fetched with force.
func (s *Source) repoint(r *git.Repository) error {
	rem, err := r.Remote("origin")
	if err == nil && len(rem.Config().URLs) == 1 && rem.Config().URLs[0] == s.cfg.URL {
		return nil
	}
	if err == nil {
		if err := r.DeleteRemote("origin"); err != nil {
			return fmt.Errorf("re-point clone at %s: %w", s.URL(), err)
		}
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}}); err != nil {
		return fmt.Errorf("re-point clone at %s: %w", s.URL(), err)
	}
	s.log.Info("source re-pointed", "url", s.URL(), "branch", s.cfg.Branch)
	return nil
}

// Head fetches the branch and returns its head revision with its tree,
// whether or not it changed since the last fetch (a replica taking over
// the lead refreshes what it fetched while following).
func (s *Source) Head(ctx context.Context) (Revision, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	rev, changed, err := s.fetch(ctx)
	if err == nil && !changed {
		rev, err = readRevision(s.repo, plumbing.NewHash(rev.Commit))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return Revision{}, err
	}
	s.lastErr = nil
	s.fetchedAt = time.Now().UTC()
	s.last = rev.Commit
	return rev, nil
}

// IsAncestor reports whether commit ancestor is reachable from commit
// descendant in the fetched history (false when they are equal). An error
// means one of them is not in the clone.
//
// It reads the clone on disk through a repository of its own, so it never
// waits for a fetch in flight (objects are written before refs move).
func (s *Source) IsAncestor(ancestor, descendant string) (bool, error) {
	if ancestor == descendant {
		return false, nil
	}
	repo, err := git.PlainOpen(s.cfg.Dir)
	if err != nil {
		return false, fmt.Errorf("is ancestor: nothing fetched yet: %w", err)
	}
	a, err := repo.CommitObject(plumbing.NewHash(ancestor))
	if err != nil {
		return false, fmt.Errorf("is ancestor: commit %s: %w", ancestor, err)
	}
	d, err := repo.CommitObject(plumbing.NewHash(descendant))
	if err != nil {
		return false, fmt.Errorf("is ancestor: commit %s: %w", descendant, err)
	}
	return a.IsAncestor(d)
}

// Fetch fetches the branch and returns its head commit; changed reports
// whether it differs from the last one returned.
func (s *Source) Fetch(ctx context.Context) (Revision, bool, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	rev, changed, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return rev, false, err
	}
	s.lastErr = nil
	s.fetchedAt = time.Now().UTC()
	if changed {
		s.last = rev.Commit
	}
	return rev, changed, nil
}

// fetch runs with fetchMu held and at most FetchTimeout.
func (s *Source) fetch(ctx context.Context) (Revision, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	auth, err := s.auth()
	if err != nil {
		return Revision{}, false, err
	}
	repo, err := s.open(ctx, auth)
	if err != nil {
		return Revision{}, false, err
	}
	ref := s.refName()
	spec := config.RefSpec("+" + ref.String() + ":" + ref.String())
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: auth, Force: true, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if ctx.Err() == context.DeadlineExceeded {
			return Revision{}, false, fmt.Errorf("fetch %s %s: no answer within %s: %w", s.URL(), s.cfg.Branch, s.cfg.FetchTimeout, err)
		}
		return Revision{}, false, fmt.Errorf("fetch %s %s: %w", s.URL(), s.cfg.Branch, err)
	}
	if err == nil {
		s.privatePacks()
	}
	head, err := repo.Reference(ref, true)
	if err != nil {
		return Revision{}, false, fmt.Errorf("fetch %s: branch %s: %w", s.URL(), s.cfg.Branch, err)
	}
	commit := head.Hash().String()
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if commit == last {
		return Revision{Commit: commit}, false, nil
	}
	rev, err := readRevision(repo, head.Hash())
	if err != nil {
		return Revision{}, false, err
	}
	return rev, true, nil
}

// privatePacks makes the pack files a fetch wrote owner-only: go-git
// makes them 0444 whatever the umask, and the clone holds the whole
// repository.
func (s *Source) privatePacks() {
	packs, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "objects", "pack", "*"))
	for _, p := range packs {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&^0o077); err != nil {
				s.log.Warn("make pack file owner-only", "file", p, "err", err)
			}
		}
	}
}

// wanted reports whether a tree file is read into the revision's FS.
func wanted(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json", ".rego", ".md":
		return true
	}
	return false
}

func readRevision(repo *git.Repository, h plumbing.Hash) (Revision, error) {
	c, err := repo.CommitObject(h)
	if err != nil {
		return Revision{}, fmt.Errorf("read commit %s: %w", h, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return Revision{}, fmt.Errorf("read tree of %s: %w", h, err)
	}
	fsys := fstest.MapFS{}
	err = tree.Files().ForEach(func(f *object.File) error {
		if !wanted(f.Name) || f.Size > MaxFileSize || !f.Mode.IsFile() {
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		defer r.Close()
		b, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		fsys[f.Name] = &fstest.MapFile{Data: b, Mode: 0o644, ModTime: c.Committer.When}
		return nil
	})
	if err != nil {
		return Revision{}, fmt.Errorf("read tree of %s: %w", h, err)
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Revision{Commit: h.String(), Message: msg, Author: c.Author.Name, Time: c.Committer.When.UTC(), FS: fsys}, nil
}
