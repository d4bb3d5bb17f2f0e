package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/models"
)

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// pushBomb pushes a ModelPack artifact whose one tar+zstd layer unpacks to
// n zero bytes and returns its desired model.
func pushBomb(t *testing.T, reg, version string, n int64) fleet.DesiredModel {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "model.onnx", Mode: 0o644, Size: n, Typeflag: tar.TypeReg})
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zeros)) {
		tw.Write(zeros[:min(left, int64(len(zeros)))])
	}
	tw.Close()
	zw.Close()
	tag, err := name.NewTag(reg + "/models/demo:" + version)
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
	cfg, _ := json.Marshal(models.ModelConfig{ModelFS: models.ModelFS{Type: "layers", DiffIDs: []string{"sha256:x"}}})
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: models.ArtifactTypeModelManifest,
		Config: put(cfg, models.MediaTypeModelConfig),
		Layers: []v1.Descriptor{put(buf.Bytes(), "application/vnd.cncf.model.weight.v1.tar+zstd")}}
	b, _ := json.Marshal(m)
	if err := remote.Put(tag, rawManifest(b)); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return fleet.DesiredModel{Release: "demo", Model: "demo", Version: version, Artifact: tag.Context().Name() + "@" + h.String(),
		Digest: h.String(), PlainHTTP: true}
}

// TestUnpackBombFailsForGood: an update to an artifact that unpacks past
// the pull limits fails that digest for good with the reason, leaves no
// partial slot, and the previous model keeps serving; the agent does not
// pull it again.
func TestUnpackBombFailsForGood(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights", "ok": ""})
	bomb := pushBomb(t, reg, "2", 256<<20)
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v1.Digest)

	for range 2 {
		// Permanent: Apply returns no error to retry with.
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{bomb}}); err != nil {
			t.Fatalf("bomb: %v, want a permanent failure", err)
		}
		s := api.last("demo")
		if s.Phase != fleet.PhaseFailed || !strings.Contains(s.Message, "max unpack ratio 20") || s.Digest != v1.Digest {
			t.Fatalf("status %+v", s)
		}
		wantActive(t, root, v1.Digest)
	}
	slots, _ := os.ReadDir(filepath.Join(root, "models/demo/slots"))
	for _, e := range slots {
		if strings.HasPrefix(e.Name(), strings.TrimPrefix(bomb.Digest, "sha256:")[:12]) {
			t.Errorf("slot of the bomb left behind: %s", e.Name())
		}
	}
	var big []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > 1<<20 {
			big = append(big, p)
		}
		return nil
	})
	if len(big) > 0 {
		t.Errorf("large files left under the agent's root: %v", big)
	}
}
