package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Variants: one model in several builds (int8 for arm64, fp16 for GPUs) is
// one OCI image index whose manifests carry a platform; an accelerator is a
// platform feature ("linux/amd64+cuda" is os linux, architecture amd64,
// features [cuda]).

// parsePlatform parses "os/arch[/variant][+accelerator]".
func parsePlatform(s string) (*v1.Platform, error) {
	base, accel, _ := strings.Cut(s, "+")
	p, err := v1.ParsePlatform(base)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("platform %q: want os/arch[/variant][+accelerator]", s)
	}
	if accel != "" {
		p.Features = []string{accel}
	}
	return p, nil
}

func platformString(p *v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if len(p.Features) > 0 {
		s += "+" + strings.Join(p.Features, "+")
	}
	return s
}

// choosePlatform picks the manifest for platform ("" is the only manifest of
// the index, else the running platform). Os, architecture and (when given)
// variant must match; a wanted accelerator prefers the manifest built for it
// and falls back to one built for none; without one, manifests built for an
// accelerator are never chosen.
func choosePlatform(idx *v1.IndexManifest, platform string) (v1.Descriptor, error) {
	if platform == "" && len(idx.Manifests) == 1 {
		return idx.Manifests[0], nil
	}
	want := platform
	if want == "" {
		want = runtime.GOOS + "/" + runtime.GOARCH
	}
	p, err := parsePlatform(want)
	if err != nil {
		return v1.Descriptor{}, err
	}
	var plain *v1.Descriptor
	for i, d := range idx.Manifests {
		dp := d.Platform
		if dp == nil || dp.OS != p.OS || dp.Architecture != p.Architecture || (p.Variant != "" && dp.Variant != p.Variant) {
			continue
		}
		if len(p.Features) > 0 && slices.Contains(dp.Features, p.Features[0]) {
			return d, nil
		}
		if len(dp.Features) == 0 && plain == nil {
			plain = &idx.Manifests[i]
		}
	}
	if plain != nil {
		return *plain, nil
	}
	var have []string
	for _, d := range idx.Manifests {
		if d.Platform != nil {
			have = append(have, platformString(d.Platform))
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no manifest for platform %s in the index (has %s)", want, strings.Join(have, ", "))
}

// addVariant puts manifest d for platform p into the index tagged tag,
// replacing the manifest of the same platform, and returns the new index's
// descriptor. A tag naming a plain manifest (or nothing) starts a new index.
// Two pushes racing on one tag may lose one variant: push variants in turn.
// The entry carries the manifest's artifactType (a ModelPack manifest's or a
// ModelKit's), the index the one its entries share, if they share one.
func (c *repoClient) addVariant(ctx context.Context, tag string, d v1.Descriptor, p *v1.Platform, artifactType string) (v1.Descriptor, error) {
	idx := &v1.IndexManifest{}
	b, mt, _, err := c.getManifest(ctx, tag)
	var terr *transport.Error
	switch {
	case err == nil && isIndex(b, mt):
		if idx, err = decodeIndex(b); err != nil {
			return v1.Descriptor{}, fmt.Errorf("index %s: %w", tag, err)
		}
	case err == nil, errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
	default:
		return v1.Descriptor{}, fmt.Errorf("index %s: %w", tag, err)
	}
	d.Platform = p
	d.ArtifactType = artifactType
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(e v1.Descriptor) bool {
		return e.Platform != nil && e.Platform.Equals(*p)
	})
	idx.Manifests = append(idx.Manifests, d)
	idx.SchemaVersion = 2
	idx.MediaType = types.OCIImageIndex
	idx.ArtifactType = artifactType
	for _, e := range idx.Manifests {
		if e.ArtifactType != artifactType {
			idx.ArtifactType = ""
		}
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("encode index: %w", err)
	}
	if err := c.putManifest(ctx, tag, ib, string(types.OCIImageIndex)); err != nil {
		return v1.Descriptor{}, err
	}
	return descriptorOf(ib, string(types.OCIImageIndex)), nil
}
