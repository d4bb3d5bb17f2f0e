package models

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// resolved is a manifest fetched and verified, after choosing a platform in
// an image index.
type resolved struct {
	raw       []byte
	mediaType string
	digest    v1.Hash
	manifest  *v1.Manifest
	index     v1.Hash // the image index the manifest was chosen from, if any
	variants  []Variant
}

// resolveRef parses ref, connects to its repository for reading and
// resolves it to a manifest.
func resolveRef(ctx context.Context, ref string, opts Options) (*repoClient, *resolved, error) {
	r, err := parseRef(ref, opts)
	if err != nil {
		return nil, nil, err
	}
	c, err := newRepoClient(ctx, r.Context(), opts, false)
	if err != nil {
		return nil, nil, err
	}
	res, err := resolve(ctx, c, r, opts)
	if err != nil {
		return nil, nil, err
	}
	return c, res, nil
}

// resolve fetches the manifest ref names; for an image index, the manifest of
// the chosen platform.
func resolve(ctx context.Context, c *repoClient, r name.Reference, opts Options) (*resolved, error) {
	b, mt, h, err := c.getManifest(ctx, r.Identifier())
	if err != nil {
		return nil, err
	}
	var index v1.Hash
	var variants []Variant
	if isIndex(b, mt) {
		index = h
		idx, err := decodeIndex(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		for _, m := range idx.Manifests {
			v := Variant{Digest: m.Digest.String(), Size: m.Size}
			if m.Platform != nil {
				v.Platform = platformString(m.Platform)
			}
			variants = append(variants, v)
		}
		d, err := choosePlatform(idx, opts.Platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		b, mt, h, err = c.getManifest(ctx, d.Digest.String())
		if err != nil {
			return nil, err
		}
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	if mt == "" {
		mt = string(m.MediaType)
	}
	return &resolved{raw: b, mediaType: mt, digest: h, manifest: m, index: index, variants: variants}, nil
}

func isIndex(b []byte, mt string) bool {
	switch types.MediaType(mt) {
	case types.OCIImageIndex, types.DockerManifestList:
		return true
	}
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	return types.MediaType(probe.MediaType).IsIndex() || (probe.MediaType == "" && probe.Manifests != nil)
}

func decodeIndex(b []byte) (*v1.IndexManifest, error) {
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("decode index: %w", err)
	}
	for _, d := range idx.Manifests {
		if d.Digest.Algorithm != "sha256" || !reHex64.MatchString(d.Digest.Hex) {
			return nil, fmt.Errorf("decode index: manifest digest %q is not sha256", d.Digest)
		}
	}
	return &idx, nil
}

// artifactKind tells ModelPack artifacts from KitOps ModelKits: by
// artifactType, else config media type (some registries drop artifactType),
// else the layers' media types.
func artifactKind(m *v1.Manifest) string {
	switch {
	case m.ArtifactType == ArtifactTypeModelManifest, string(m.Config.MediaType) == MediaTypeModelConfig:
		return KindModelPack
	case m.ArtifactType == ArtifactTypeKitOpsManifest, string(m.Config.MediaType) == MediaTypeKitOpsConfig:
		return KindKitOps
	}
	if len(m.Layers) == 0 {
		return KindUnknown
	}
	mp, kit := true, true
	for _, l := range m.Layers {
		mt := string(l.MediaType)
		mp = mp && reModelPackLayer.MatchString(mt)
		kit = kit && reKitOpsLayer.MatchString(mt)
	}
	switch {
	case mp:
		return KindModelPack
	case kit:
		return KindKitOps
	}
	return KindUnknown
}

// layerPath is the file path a layer declares (ModelPack's filepath, else
// the OCI title that oras writes).
func layerPath(l v1.Descriptor) string {
	if p := l.Annotations[AnnotationFilepath]; p != "" {
		return p
	}
	return l.Annotations[annotationTitle]
}
