package models

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// Inspect describes the model artifact ref names, reading its manifest and
// config (verified against their digests), without downloading its layers.
func Inspect(ctx context.Context, ref string, opts Options) (*Artifact, error) {
	c, res, err := resolveRef(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	m := res.manifest
	a := &Artifact{
		Ref:             c.repo.Name() + "@" + res.digest.String(),
		Digest:          res.digest.String(),
		Kind:            artifactKind(m),
		MediaType:       res.mediaType,
		ArtifactType:    m.ArtifactType,
		ConfigMediaType: string(m.Config.MediaType),
		ConfigDigest:    m.Config.Digest.String(),
		Annotations:     m.Annotations,
		Size:            m.Config.Size,
	}
	if res.index.Hex != "" {
		a.Index = res.index.String()
		a.Variants = res.variants
	}
	cfg, err := c.fetchSmallBlob(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: config: %w", ref, err)
	}
	if json.Valid(cfg) {
		a.Config = cfg
	}
	for _, l := range m.Layers {
		a.Layers = append(a.Layers, Layer{
			MediaType:   string(l.MediaType),
			Digest:      l.Digest.String(),
			Size:        l.Size,
			Path:        layerPath(l),
			Annotations: l.Annotations,
		})
		a.Size += l.Size
	}
	return a, nil
}

// Rows prints an artifact as a table of its layers (internal/output.Tabular).
func (a *Artifact) Rows() ([]string, [][]string) {
	rows := [][]string{}
	for _, l := range a.Layers {
		rows = append(rows, []string{l.Path, l.MediaType, strconv.FormatInt(l.Size, 10), l.Digest})
	}
	return []string{"path", "media type", "size", "digest"}, rows
}
