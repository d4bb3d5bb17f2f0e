package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cairn-dev/cairn/registry/models"
)

// Fetcher pulls a model artifact, verified, into dir and returns the digest
// of the manifest it pulled. An interrupted fetch must resume when called
// again with the same dir.
type Fetcher interface {
	Fetch(ctx context.Context, ref, dir string, plainHTTP bool) (digest string, err error)
}

// PullFetcher fetches with models.Pull, sharing a layer cache between slots.
type PullFetcher struct {
	CacheDir  string
	Transport http.RoundTripper
	Options   models.Options
	// Limits bound what an artifact may make a pull write (zero: defaults).
	Limits models.Limits
}

// Fetch implements Fetcher.
func (p *PullFetcher) Fetch(ctx context.Context, ref, dir string, plainHTTP bool) (string, error) {
	opts := models.PullOptions{Options: p.Options, CacheDir: p.CacheDir, Limits: p.Limits}
	opts.PlainHTTP = opts.PlainHTTP || plainHTTP
	if p.Transport != nil {
		opts.Transport = p.Transport
	}
	res, err := models.Pull(ctx, ref, dir, opts)
	if err != nil {
		return "", err
	}
	if p.CacheDir != "" {
		if err := p.writeRefs(res); err != nil {
			return "", fmt.Errorf("pull %s: record cached blobs: %w", ref, err)
		}
	}
	return res.Digest, nil
}

// errPermanent marks install failures that retrying the same digest cannot fix.
var errPermanent = errors.New("permanent")

// permanentFetchError reports whether a fetch error is about the artifact
// itself (bad digest, not a model, unsafe paths, over a pull limit: an
// unpack bomb, too many files, larger than the disk allows) rather than the
// way to it.
func permanentFetchError(err error) bool {
	return errors.Is(err, models.ErrDigestMismatch) || errors.Is(err, models.ErrNotModel) ||
		errors.Is(err, models.ErrUnsafePath) || errors.Is(err, models.ErrLimit)
}

func wrapPermanent(err error) error { return fmt.Errorf("%w: %w", errPermanent, err) }
