package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cairn-dev/cairn/registry/blobs"
)

// legacyManifest is one manifest as the previous built-in registry kept it
// (go-containerregistry's registry, manifests replayed from DIR/manifests,
// blobs in cairn's blob store under blobs/sha256/…).
type legacyManifest struct {
	Seq         int64  `json:"seq"`
	Repo        string `json:"repo"`
	Ref         string `json:"ref"`
	ContentType string `json:"contentType"`
	Body        []byte `json:"body"`
}

// migratedSuffix names the previous registry's manifest folder once its
// manifests are in Distribution; it is kept, so nothing pushed is lost.
const migratedSuffix = ".migrated"

// migrate moves what the previous built-in registry left in dir (manifest
// records) and in the blob store at storeURL (their blobs) into
// Distribution, once: dir is renamed to dir.migrated afterwards. A manifest
// that cannot be migrated (its blobs are gone, it never was valid) is
// logged and left in the kept folder.
func (r *Registry) migrate(ctx context.Context, dir, storeURL string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("migrate the previous registry: %w", err)
	}
	var recs []legacyManifest
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("migrate the previous registry: %w", err)
		}
		var rec legacyManifest
		if err := json.Unmarshal(b, &rec); err != nil {
			r.log.Warn("migrate the previous registry: skip an unreadable manifest record", "file", e.Name(), "err", err)
			continue
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b legacyManifest) int { return int(a.Seq - b.Seq) })
	var old blobs.Store
	if len(recs) > 0 {
		if old, err = blobs.Open(ctx, storeURL); err != nil {
			return fmt.Errorf("migrate the previous registry: open its blob store: %w", err)
		}
	}
	m := &migration{r: r, old: old, blobRepo: map[digest.Digest]reference.Named{}}
	// An index must follow the manifests it names, and the old records'
	// order does not promise that (a manifest pushed again after an index
	// got a later number): retry what failed while anything moves.
	pending, failed := recs, map[int64]error{}
	for len(pending) > 0 {
		var next []legacyManifest
		for _, rec := range pending {
			if err := m.manifest(ctx, rec); err != nil {
				failed[rec.Seq] = err
				next = append(next, rec)
				continue
			}
			delete(failed, rec.Seq)
			m.manifests++
		}
		if len(next) == len(pending) {
			break
		}
		pending = next
	}
	for _, rec := range pending {
		r.log.Warn("migrate the previous registry: manifest not migrated (kept in the old folder)",
			"repo", rec.Repo, "ref", rec.Ref, "err", failed[rec.Seq])
	}
	if err := os.Rename(dir, dir+migratedSuffix); err != nil {
		return fmt.Errorf("migrate the previous registry: %w", err)
	}
	r.log.Info("migrated the previous built-in registry to CNCF Distribution", "manifests", m.manifests,
		"blobs", m.blobs, "notMigrated", len(pending), "kept", dir+migratedSuffix)
	return nil
}

type migration struct {
	r         *Registry
	old       blobs.Store
	blobRepo  map[digest.Digest]reference.Named // a repository holding each copied blob
	manifests int
	blobs     int
}

func (m *migration) manifest(ctx context.Context, rec legacyManifest) error {
	named, err := reference.WithName(rec.Repo)
	if err != nil {
		return fmt.Errorf("repository %q: %w", rec.Repo, err)
	}
	repo, err := m.r.ns.Repository(ctx, named)
	if err != nil {
		return err
	}
	var refs struct {
		Config *v1.Descriptor  `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(rec.Body, &refs); err != nil {
		return fmt.Errorf("decode manifest: %w", err)
	}
	if refs.Config != nil {
		refs.Layers = append(refs.Layers, *refs.Config)
	}
	for _, d := range refs.Layers {
		if err := m.blob(ctx, repo, named, d); err != nil {
			return err
		}
	}
	man, desc, err := distribution.UnmarshalManifest(rec.ContentType, rec.Body)
	if err != nil {
		return fmt.Errorf("decode manifest: %w", err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return err
	}
	got, err := ms.Put(ctx, man)
	if err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	if d, err := digest.Parse(rec.Ref); err == nil {
		if d != got {
			m.r.log.Warn("migrate the previous registry: a manifest stored under a digest it does not have is kept under its own",
				"repo", rec.Repo, "ref", rec.Ref, "digest", got)
		}
		return nil
	}
	if !reference.TagRegexp.MatchString(rec.Ref) || len(rec.Ref) > 128 {
		m.r.log.Warn("migrate the previous registry: an invalid tag is dropped, the manifest is kept by digest",
			"repo", rec.Repo, "tag", rec.Ref, "digest", got)
		return nil
	}
	desc.Digest = got
	if err := repo.Tags(ctx).Tag(ctx, rec.Ref, desc); err != nil {
		return fmt.Errorf("tag %s: %w", rec.Ref, err)
	}
	return nil
}

// blob links d into repo: mounted from a repository already holding it,
// else copied from the old blob store.
func (m *migration) blob(ctx context.Context, repo distribution.Repository, named reference.Named, d v1.Descriptor) error {
	bs := repo.Blobs(ctx)
	if _, err := bs.Stat(ctx, d.Digest); err == nil {
		return nil
	}
	if from, ok := m.blobRepo[d.Digest]; ok {
		canon, err := reference.WithDigest(from, d.Digest)
		if err == nil {
			_, err = bs.Create(ctx, storage.WithMountFrom(canon))
			var mounted distribution.ErrBlobMounted
			if errors.As(err, &mounted) {
				return nil
			}
		}
	}
	rc, err := m.old.Get(ctx, blobs.BlobKey(d.Digest.String()), 0, -1)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	w, err := bs.Create(ctx)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if _, err := io.Copy(w, rc); err != nil {
		w.Cancel(ctx)
		return fmt.Errorf("copy blob %s: %w", d.Digest, err)
	}
	if _, err := w.Commit(ctx, v1.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}); err != nil {
		return fmt.Errorf("commit blob %s: %w", d.Digest, err)
	}
	m.blobRepo[d.Digest] = named
	m.blobs++
	return nil
}
