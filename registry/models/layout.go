package models

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer formats of Push (PushOptions.LayerFormat).
const (
	// LayerFormatRaw: each file is one raw layer (ModelPack .raw, with its
	// mode and mtime in AnnotationFileMetadata). The default.
	LayerFormatRaw = "raw"
	// LayerFormatTar: each file is one uncompressed tar layer (ModelPack
	// .v1.tar) holding the file under its path from the model root, with
	// its parent folders, mode, mtime and numeric owner in the headers: the
	// layout modctl writes, for consumers that read every layer as tar.
	LayerFormatTar = "tar"
	// LayerFormatKitOps: a KitOps ModelKit: the same tar layers with KitOps
	// media types (model, modelpart, code, dataset, docs) and a Kitfile as
	// the config, which lists every layer with its digest, so `kit unpack`
	// writes each file at its path. ModelPack-only tools cannot read it.
	LayerFormatKitOps = "kitops"
)

// checkLayerFormat validates PushOptions.LayerFormat ("" is raw).
func checkLayerFormat(f string) (string, error) {
	switch f {
	case "", LayerFormatRaw:
		return LayerFormatRaw, nil
	case LayerFormatTar, LayerFormatKitOps:
		return f, nil
	}
	return "", fmt.Errorf("layer format %q: want raw, tar or kitops", f)
}

// tarHeaders are the tar headers of s's layer: its parent folders, then the
// file, all with s's mtime, the file with its permission bits and numeric
// owner (no user or group names, so the bytes do not depend on the host).
func tarHeaders(s source) []*tar.Header {
	var hs []*tar.Header
	dirs := strings.Split(s.rel, "/")
	for i := 1; i < len(dirs); i++ {
		hs = append(hs, &tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(dirs[:i], "/") + "/",
			Mode: 0o755, ModTime: s.mtime, Format: tar.FormatPAX})
	}
	return append(hs, &tar.Header{Typeflag: tar.TypeReg, Name: s.rel, Size: s.size, Mode: int64(s.mode.Perm()),
		Uid: int(s.uid), Gid: int(s.gid), ModTime: s.mtime, Format: tar.FormatPAX})
}

// tarHead is the bytes of the tar stream of s's layer before the file's
// content; the stream is then the content, padding to 512 bytes and the
// two zero blocks that end an archive.
func tarHead(s source) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range tarHeaders(s) {
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header of %s: %w", s.rel, err)
		}
	}
	return b.Bytes(), nil // the headers are written through; no Close
}

// tarSize is the size of s's tar layer with head as its headers.
func tarSize(head []byte, size int64) int64 {
	return int64(len(head)) + (size+511)&^511 + 1024
}

// pushTarFile streams s as a one-file tar layer and returns the layer's
// digest and size, and the digest of the file's content.
func pushTarFile(ctx context.Context, c *repoClient, s source, hooks ProgressHooks) (layer v1.Hash, size int64, file string, err error) {
	if hooks.Start != nil {
		hooks.Start(s.rel, s.size)
	}
	if hooks.Done != nil {
		defer func() { hooks.Done(s.rel, err) }()
	}
	head, err := tarHead(s)
	if err != nil {
		return v1.Hash{}, 0, "", err
	}
	f, err := os.Open(s.abs)
	if err != nil {
		return v1.Hash{}, 0, "", err
	}
	defer f.Close()
	fh := sha256.New()
	var r io.Reader = io.TeeReader(io.LimitReader(f, s.size), fh)
	if hooks.Progress != nil {
		r = &progressReader{r: r, path: s.rel, fn: hooks.Progress}
	}
	cr := &countReader{r: r}
	pad := make([]byte, (s.size+511)&^511-s.size+1024)
	size = tarSize(head, s.size)
	layer, err = c.uploadBlob(ctx, io.MultiReader(bytes.NewReader(head), cr, &shortCheck{n: &cr.n, want: s.size, rel: s.rel}, bytes.NewReader(pad)), size)
	if err != nil {
		return v1.Hash{}, 0, "", err
	}
	return layer, size, "sha256:" + hex.EncodeToString(fh.Sum(nil)), nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// shortCheck fails a tar stream whose file ended before its size: a file
// that shrank while it was pushed.
type shortCheck struct {
	n    *int64
	want int64
	rel  string
}

func (s *shortCheck) Read([]byte) (int, error) {
	if *s.n != s.want {
		return 0, fmt.Errorf("%s: read %d bytes of %d (changed while pushed)", s.rel, *s.n, s.want)
	}
	return 0, io.EOF
}

// tarLayerDescriptor is the descriptor of s's tar layer in format lf.
func tarLayerDescriptor(s source, h v1.Hash, size int64, lf string) v1.Descriptor {
	mt := "application/vnd.cncf.model." + s.kind + ".v1.tar"
	if lf == LayerFormatKitOps {
		mt = "application/vnd.kitops.modelkit." + kitType(s) + ".v1.tar"
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: size,
		Annotations: map[string]string{AnnotationFilepath: s.rel, annotationTitle: s.rel}}
}

// kitType is the KitOps layer type of a file: the model is the first weight
// file (set by kitRoles), other weights and weight configs are model parts.
func kitType(s source) string {
	switch s.kind {
	case KindCode:
		return "code"
	case KindDataset:
		return "dataset"
	case KindDoc:
		return "docs"
	}
	if s.kitModel {
		return "model"
	}
	return "modelpart"
}

// kitOrder marks the model file of a KitOps push (the first weight file, or
// the first weight config without one) and sorts the files as kit packs a
// ModelKit: model, model parts, code, datasets, docs; by path within each.
func kitOrder(srcs []source) {
	model := -1
	for i, s := range srcs {
		if s.kind == KindWeight {
			model = i
			break
		}
	}
	if model < 0 {
		for i, s := range srcs {
			if s.kind == KindWeightConfig {
				model = i
				break
			}
		}
	}
	if model >= 0 {
		srcs[model].kitModel = true
	}
	rank := map[string]int{"model": 0, "modelpart": 1, "code": 2, "dataset": 3, "docs": 4}
	sort.SliceStable(srcs, func(i, j int) bool {
		if ri, rj := rank[kitType(srcs[i])], rank[kitType(srcs[j])]; ri != rj {
			return ri < rj
		}
		return srcs[i].rel < srcs[j].rel
	})
}

// Kitfile is the config of a KitOps ModelKit (kit's pkg/artifact), as much
// of it as a push fills.
type Kitfile struct {
	ManifestVersion string     `json:"manifestVersion"`
	Package         KitPackage `json:"package,omitempty"`
	Model           *KitModel  `json:"model,omitempty"`
	Code            []KitLayer `json:"code,omitempty"`
	DataSets        []KitLayer `json:"datasets,omitempty"`
	Docs            []KitLayer `json:"docs,omitempty"`
}

// KitPackage is a Kitfile's package section.
type KitPackage struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// KitModel is a Kitfile's model: its main file and parts.
type KitModel struct {
	Name   string     `json:"name,omitempty"`
	Path   string     `json:"path,omitempty"`
	Format string     `json:"format,omitempty"`
	Parts  []KitLayer `json:"parts,omitempty"`
	KitLayerInfo
}

// KitLayer is a Kitfile entry with the layer that holds it.
type KitLayer struct {
	Path string `json:"path"`
	KitLayerInfo
}

// KitLayerInfo ties a Kitfile entry to its layer: kit unpacks a layer whose
// entry has it at the root (the tar holds paths from the model root), one
// without it under the folder of the entry's path.
type KitLayerInfo struct {
	Digest string `json:"digest,omitempty"`
	DiffID string `json:"diffId,omitempty"`
}

// buildKitfile is the Kitfile of a KitOps push of srcs (in kitOrder) as
// layers.
func buildKitfile(srcs []source, layers []v1.Descriptor, opts PushOptions) ([]byte, error) {
	kf := Kitfile{ManifestVersion: "1.0.0", Package: KitPackage{Name: opts.Name, Version: opts.Version}}
	for i, s := range srcs {
		info := KitLayerInfo{Digest: layers[i].Digest.String(), DiffID: layers[i].Digest.String()} // uncompressed
		e := KitLayer{Path: s.rel, KitLayerInfo: info}
		switch kitType(s) {
		case "model":
			kf.Model = &KitModel{Name: opts.Name, Path: s.rel, Format: describeWeights(srcs).format, KitLayerInfo: info}
			if opts.Format != "" {
				kf.Model.Format = opts.Format
			}
		case "modelpart":
			kf.Model.Parts = append(kf.Model.Parts, e)
		case "code":
			kf.Code = append(kf.Code, e)
		case "dataset":
			kf.DataSets = append(kf.DataSets, e)
		case "docs":
			kf.Docs = append(kf.Docs, e)
		}
	}
	b, err := json.Marshal(kf)
	if err != nil {
		return nil, fmt.Errorf("encode Kitfile: %w", err)
	}
	return b, nil
}

// pushTarRetrying pushes s as a tar layer, again from the start after a
// failed upload.
func pushTarRetrying(ctx context.Context, c *repoClient, s source, hooks ProgressHooks) (h v1.Hash, size int64, file string, err error) {
	for try := 0; try < attempts; try++ {
		if h, size, file, err = pushTarFile(ctx, c, s, hooks); err == nil || ctx.Err() != nil {
			break
		}
	}
	return h, size, file, err
}
