package models

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// extract unpacks a verified tar layer (ModelPack .tar[+gzip|+zstd], KitOps
// ModelKit layers: paths relative to the model root) into DIR.
func (p *puller) extract(src *os.Root, blobRel string, l layerPlan) error {
	f, err := src.Open(blobRel)
	if err != nil {
		return err
	}
	defer f.Close()
	files, err := p.extractTar(f, l.f.compression, l.path, l.desc.Size)
	for _, fl := range files {
		fl.Kind = l.f.kind
		p.addFile(fl)
	}
	return err
}

// writeFunc writes r to rel under the root and returns size and digest.
type writeFunc func(rel string, r io.Reader, perm fs.FileMode, want *v1.Descriptor) (int64, string, error)

// decompress wraps r for a layer's compression.
func decompress(r io.Reader, compression string) (io.ReadCloser, error) {
	switch compression {
	case "":
		return io.NopCloser(r), nil
	case "gzip":
		return gzip.NewReader(r)
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("unsupported compression %q", compression)
}

// extractTar writes the entries of a tar stream under base in DIR. Entry
// paths that are absolute, contain "..", or would be written through a
// symbolic link are refused with ErrUnsafePath; links must point inside the
// root, also when followed through other links (checked as each is made and
// again once the stream ends, when a later link could have changed where an
// earlier one leads; links failing then are removed). A hard link must name
// a regular file this stream has already written. Regular files go through a
// temporary name. The stream may unpack to at most p.lim's unpack budget for
// a layer of size compressed bytes (0: unknown, no budget) and count p.lim's
// MaxFiles entries with the other layers of the pull.
func (p *puller) extractTar(r io.Reader, compression, base string, compressed int64) (_ []File, err error) {
	root := p.dir
	links := map[string]bool{}
	regular := map[string]bool{} // files written by this stream, for hard links
	defer func() {
		if cerr := checkLinks(root, links); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	zr, err := decompress(r, compression)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	defer zr.Close()
	var in io.Reader = zr
	if budget := p.lim.unpackBudget(compressed); budget >= 0 && compressed > 0 {
		in = &limitedReader{r: zr, left: budget, max: budget, compressed: compressed, ratio: p.lim.MaxUnpackRatio}
	}
	tr := tar.NewReader(in)
	var files []File
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			if errors.Is(err, ErrLimit) {
				return files, err
			}
			return files, fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeXHeader {
			continue
		}
		if err := p.countEntry(); err != nil {
			return files, err
		}
		name := h.Name
		if name == "./" || name == "." || name == "" {
			continue
		}
		rel, err := cleanRel(name)
		if err != nil {
			return files, fmt.Errorf("tar entry: %w", err)
		}
		if base != "" {
			rel = path.Join(base, rel)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := checkParents(root, rel+"/x"); err != nil {
				return files, err
			}
			if err := p.mkdirAll(rel); err != nil {
				return files, rootErr(rel, err)
			}
			p.noteDir(rel, h)
		case tar.TypeReg, tar.TypeRegA:
			perm := fs.FileMode(h.Mode) & fs.ModePerm // the header's mode, without setuid, setgid, sticky
			n, sum, err := p.writeFile(rel, tr, perm, nil)
			if err != nil {
				return files, err
			}
			if err := p.applyHeader(rel, h); err != nil {
				return files, rootErr(rel, err)
			}
			regular[rel] = true
			files = append(files, File{Path: rel, Digest: sum, Size: n})
		case tar.TypeSymlink:
			if err := p.prepare(rel); err != nil {
				return files, err
			}
			if _, err := resolveLink(root, rel, h.Linkname); err != nil {
				return files, err
			}
			_ = root.Remove(rel)
			delete(regular, rel)
			if err := root.Symlink(h.Linkname, rel); err != nil {
				return files, rootErr(rel, err)
			}
			p.made(rel)
			links[rel] = true
			p.madeLink(rel)
		case tar.TypeLink:
			target, err := cleanRel(h.Linkname)
			if err != nil {
				return files, fmt.Errorf("hard link %q: %w", rel, err)
			}
			if base != "" {
				target = path.Join(base, target)
			}
			if err := checkHardLink(root, rel, target, regular); err != nil {
				return files, err
			}
			if err := p.prepare(rel); err != nil {
				return files, err
			}
			_ = root.Remove(rel)
			if err := root.Link(target, rel); err != nil {
				return files, rootErr(rel, err)
			}
			p.made(rel)
			regular[rel] = true
		default:
			// devices, FIFOs and the like have no place in a model: skipped.
		}
	}
}

// checkHardLink refuses a hard link at rel to target unless target is a
// regular file the stream wrote (listed in regular) and still a regular
// file, reached without a symbolic link: a hard link to a symbolic link is
// a second symbolic link no check saw, one to a folder or to a file of the
// host would expose it.
func checkHardLink(root *os.Root, rel, target string, regular map[string]bool) error {
	if err := checkParents(root, target); err != nil {
		return fmt.Errorf("hard link %q: %w", rel, err)
	}
	if !regular[target] {
		return fmt.Errorf("%w: hard link %q names %q, which is not a regular file extracted before it", ErrUnsafePath, rel, target)
	}
	fi, err := root.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link %q names %q, which is not a regular file", ErrUnsafePath, rel, target)
	}
	return nil
}

// applyHeader gives the regular file rel, just written from a tar entry, the
// header's mtime and, when the pull runs as root, its owner, as
// applyMetadata does for raw layers (the mode was set when it was written).
func (p *puller) applyHeader(rel string, h *tar.Header) error {
	return p.setTimeOwner(rel, h.ModTime, h.Uid, h.Gid)
}

// dirTime is what the tar entries of a folder give it, applied once every
// layer is in place (writing into a folder changes its mtime).
type dirTime struct {
	mtime    time.Time
	uid, gid int
}

// noteDir records the folder entry h for rel. A folder named by several
// entries (one per file layer, as cairn writes them) gets the newest mtime,
// whatever order the layers were extracted in.
func (p *puller) noteDir(rel string, h *tar.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dirTimes == nil {
		p.dirTimes = map[string]dirTime{}
	}
	if cur, ok := p.dirTimes[rel]; !ok || h.ModTime.After(cur.mtime) {
		p.dirTimes[rel] = dirTime{mtime: h.ModTime, uid: h.Uid, gid: h.Gid}
	}
}

// applyDirTimes gives the folders of tar layers their entries' mtime (and
// owner as root), after everything else of the pull is written.
func (p *puller) applyDirTimes() error {
	for rel, dt := range p.dirTimes {
		if err := p.setTimeOwner(rel, dt.mtime, dt.uid, dt.gid); err != nil {
			return fmt.Errorf("folder %s: %w", rel, err)
		}
	}
	return nil
}
