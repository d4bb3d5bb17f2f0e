package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

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
	// Logf, when set, gets one line per pull: the bytes downloaded and
	// reused, and how each large layer came (rebuilt from the chunks of an
	// earlier version in the cache, or downloaded whole and why). New sets
	// it to the agent's Logf when nil.
	Logf func(format string, args ...any)
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
	if p.Logf != nil {
		p.Logf("%s", pullSummary(ref, res))
	}
	if p.CacheDir != "" {
		if err := p.writeRefs(res); err != nil {
			return "", fmt.Errorf("pull %s: record cached blobs: %w", ref, err)
		}
	}
	return res.Digest, nil
}

// pullSummary is the log line of a pull.
func pullSummary(ref string, res *models.PullResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "agent: pulled %s: downloaded %d bytes, reused %d bytes", ref, res.DownloadedBytes, res.ReusedBytes)
	for _, d := range res.Deltas {
		if d.Fallback == "" {
			fmt.Fprintf(&b, "; %s rebuilt from an earlier version (%d bytes reused, %d fetched in %d ranges)", d.Path, d.ReusedBytes, d.DownloadedBytes, d.Ranges)
			if d.ResumedBytes > 0 {
				fmt.Fprintf(&b, ", resuming an interrupted rebuild (%d bytes kept)", d.ResumedBytes)
			}
		} else {
			fmt.Fprintf(&b, "; %s downloaded whole (%s)", d.Path, d.Fallback)
		}
	}
	return b.String()
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
