package models

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// workDir is the folder inside DIR where downloads wait (and resume) when
// Pull has no cache folder. No artifact path may use it.
const workDir = ".cairn-pull"

// cleanRel validates a path from an artifact (annotation or tar entry) and
// returns it cleaned: relative, slash-separated, without "..".
func cleanRel(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty path", ErrUnsafePath)
	case strings.ContainsAny(p, "\x00\\"):
		return "", fmt.Errorf("%w: %q has a NUL or a backslash", ErrUnsafePath, p)
	case strings.HasPrefix(p, "/") || (len(p) > 1 && p[1] == ':'):
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafePath, p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return "", fmt.Errorf("%w: %q contains ..", ErrUnsafePath, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", fmt.Errorf("%w: %q names the output folder itself", ErrUnsafePath, p)
	}
	if c == workDir || strings.HasPrefix(c, workDir+"/") {
		return "", fmt.Errorf("%w: %q uses cairn's reserved folder %s", ErrUnsafePath, p, workDir)
	}
	return c, nil
}

// checkParents refuses a path whose parent folders, as they are on disk
// under root, include a symbolic link: a write through a link could land
// anywhere (os.Root would refuse the ones leaving root; cairn refuses them
// all, with a clearer error).
func checkParents(root *os.Root, rel string) error {
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		fi, err := root.Lstat(prefix)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("check %s: %w", rel, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %q would be written through the symbolic link %q", ErrUnsafePath, rel, prefix)
		}
		if !fi.IsDir() {
			return fmt.Errorf("write %s: %s is not a folder", rel, prefix)
		}
	}
	return nil
}

// prepare makes the parent folders of rel under root, refusing links.
func prepare(root *os.Root, rel string) error {
	if err := checkParents(root, rel); err != nil {
		return err
	}
	if d := path.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return rootErr(rel, err)
		}
	}
	return nil
}

// rootErr turns os.Root's refusal to leave the root into ErrUnsafePath.
func rootErr(rel string, err error) error {
	if err != nil && strings.Contains(err.Error(), "escapes") {
		return fmt.Errorf("%w: %q: %v", ErrUnsafePath, rel, err)
	}
	return err
}

// tempName is a fresh name next to rel for writing before the rename.
func tempName(rel string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "." + path.Base(rel) + ".cairn-tmp-" + hex.EncodeToString(b[:])
	if d := path.Dir(rel); d != "." {
		return d + "/" + name
	}
	return name
}

// linkTargetOK reports whether a symbolic link at rel pointing to target
// stays inside the root.
func linkTargetOK(rel, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") || strings.ContainsAny(target, "\x00\\") {
		return false
	}
	j := path.Join(path.Dir(rel), target)
	return j != ".." && !strings.HasPrefix(j, "../")
}
