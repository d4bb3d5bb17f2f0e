package source

import (
	"fmt"
	"os"
	"strings"
)

// CheckPrivate returns an error when the file at path is not owner-only
// (any permission bit for group or others) or cannot be read: a secret
// kept there must be 0600 or 0400.
func CheckPrivate(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s %s is %v: group or others can read it; it holds a secret: chmod 600 %s", what, path, m, path)
	}
	return nil
}

// ReadCredentials reads the Git credential of an http(s) repository from
// a secret file: one line, "USER:PASSWORD", or a token alone (sent as the
// password of user "git", as GitHub and GitLab take it). The file must be
// owner-only (CheckPrivate); it is read again on every fetch, so a
// rotated token is used from the next fetch on.
func ReadCredentials(path string) (user, password string, err error) {
	if err := CheckPrivate(path, "repo credentials file"); err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("repo credentials file: %w", err)
	}
	line := strings.TrimSpace(string(b))
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	if line == "" {
		return "", "", fmt.Errorf("repo credentials file %s is empty: want USER:PASSWORD or a token", path)
	}
	if u, p, ok := strings.Cut(line, ":"); ok {
		return u, p, nil
	}
	return "git", line, nil
}

// HasURLCredentials reports whether the http(s) URL raw carries a
// credential (a token or a user and password) in its userinfo.
func HasURLCredentials(raw string) bool {
	_, user := splitUserinfo(raw)
	return user != nil
}
