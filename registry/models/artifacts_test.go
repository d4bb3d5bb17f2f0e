package models

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Artifacts built by hand with go-containerregistry, the way oras, modctl
// and KitOps lay them out.

type testLayer struct {
	mt   string
	data []byte
	ann  map[string]string
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// pushArtifact uploads blobs and a manifest and returns the digest reference.
func pushArtifact(t *testing.T, ref, artifactType, configMT string, config []byte, layers []testLayer, ann map[string]string) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b []byte, mt string) v1.Descriptor {
		l := static.NewLayer(b, types.MediaType(mt))
		if err := remote.WriteLayer(tag.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		return v1.Descriptor{MediaType: types.MediaType(mt), Digest: d, Size: int64(len(b))}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        put(config, configMT),
		Annotations:   ann,
	}
	for _, l := range layers {
		d := put(l.data, l.mt)
		d.Annotations = l.ann
		m.Layers = append(m.Layers, d)
	}
	b, _ := json.Marshal(m)
	if err := remote.Put(tag, rawManifest{b, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	return tag.Context().Name() + "@" + sha(b)
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func mkTar(t testing.TB, entries []tarEntry, compression string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	switch compression {
	case "gzip":
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(buf.Bytes())
		zw.Close()
		return z.Bytes()
	case "zstd":
		zw, _ := zstd.NewWriter(nil)
		return zw.EncodeAll(buf.Bytes(), nil)
	}
	return buf.Bytes()
}

func modelPackConfig(diffIDs ...string) []byte {
	b, _ := json.Marshal(ModelConfig{ModelFS: ModelFS{Type: "layers", DiffIDs: diffIDs}, Config: ModelParams{Format: "onnx"}})
	return b
}
