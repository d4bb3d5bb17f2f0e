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
// stays inside the root on its own (not followed through other links; see
// resolveLink).
func linkTargetOK(rel, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") || strings.ContainsAny(target, "\x00\\") {
		return false
	}
	j := path.Join(path.Dir(rel), target)
	return j != ".." && !strings.HasPrefix(j, "../")
}

// maxLinkHops bounds the links followed while resolving one target (as
// Linux's limit of 40).
const maxLinkHops = 40

// resolveLink resolves target, the target of the symbolic link at rel,
// lexically from the link's folder, following the links on disk under root
// on the way as the system would, and fails with ErrUnsafePath when the
// result leaves the root: "d" -> "." with "s" -> "d/.." points s at the
// parent of the root although each target alone stays inside. A ".." may
// only step back out of a folder: after a file or a missing name, a link
// made there later could change the outcome. It returns the links followed.
func resolveLink(root *os.Root, rel, target string) ([]string, error) {
	var stack []string // the names walked into, from the root
	if d := path.Dir(rel); d != "." {
		stack = strings.Split(d, "/")
	}
	var via []string
	unsafe := func(why string) error {
		var extra string
		if len(via) > 0 {
			extra = fmt.Sprintf(" through the symbolic link %q", via[len(via)-1])
		}
		if why != "" {
			extra += " (" + why + ")"
		}
		return fmt.Errorf("%w: symbolic link %q points to %q, outside the output folder%s", ErrUnsafePath, rel, target, extra)
	}
	if !linkTargetOK(rel, target) {
		return nil, unsafe("")
	}
	queue := strings.Split(target, "/")
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return via, unsafe("")
			}
			top := strings.Join(stack, "/")
			fi, err := root.Lstat(top)
			if err != nil || !fi.IsDir() {
				return via, unsafe(fmt.Sprintf(".. steps out of %q, which is not a folder", top))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		next := strings.Join(append(stack[:len(stack):len(stack)], c), "/")
		fi, err := root.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			stack = append(stack, c)
			continue
		}
		if len(via) >= maxLinkHops {
			return via, fmt.Errorf("%w: symbolic link %q points to %q: more than %d links to follow", ErrUnsafePath, rel, target, maxLinkHops)
		}
		via = append(via, next)
		t, err := root.Readlink(next)
		if err != nil {
			return via, fmt.Errorf("check symbolic link %q: %w", rel, err)
		}
		if t == "" || strings.HasPrefix(t, "/") || strings.ContainsAny(t, "\x00\\") {
			return via, unsafe("")
		}
		queue = append(strings.Split(t, "/"), queue...)
	}
	return via, nil
}

// checkLinks resolves every symbolic link under root (see resolveLink) that
// is in made or follows a link in made, made holding the links this pull
// created, so a link of one entry cannot send another out of the root
// whatever their order, or the order of layers. The links of made involved
// in a link leaving the root are removed (until none is left that does) and
// the links reported. Links cairn did not make and that do not go through
// one it made are left alone.
func checkLinks(root *os.Root, made map[string]bool) error {
	if len(made) == 0 {
		return nil
	}
	var errs []error
	for {
		removed := false
		err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // a temporary file renamed meanwhile
				}
				return err
			}
			if p == workDir {
				return fs.SkipDir
			}
			if d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, err := root.Readlink(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			via, rerr := resolveLink(root, p, target)
			if rerr == nil {
				return nil
			}
			ours := made[p]
			for _, v := range via {
				ours = ours || made[v]
			}
			if !ours {
				return nil
			}
			for _, q := range append([]string{p}, via...) {
				if made[q] && root.Remove(q) == nil {
					removed = true
				}
			}
			errs = append(errs, rerr)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("check symbolic links: %w", err))
			break
		}
		if !removed {
			break
		}
	}
	return errors.Join(errs...)
}
