package models

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/cairn-dev/cairn/errdef"
)

// Sentinel errors, for errors.Is.
var (
	// ErrDigestMismatch: a blob's bytes do not match the digest (or size) its
	// descriptor declares.
	ErrDigestMismatch = errdef.ErrDigestMismatch
	// ErrNotFound: the registry has no manifest (or repository) under the
	// reference: Inspect and Pull of a digest nobody pushed.
	ErrNotFound = errdef.ErrNotFound
	// ErrUnsafePath: a path of an artifact (annotation or tar entry) is
	// absolute, contains "..", or would land outside the output folder.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrNotModel: the reference names an OCI artifact that is neither a
	// ModelPack artifact nor a KitOps ModelKit.
	ErrNotModel = errors.New("not a model artifact")
	// ErrLimit: a pull would go over one of its Limits (unpack ratio, number
	// of entries, free disk); the error names the limit.
	ErrLimit = errors.New("pull limit reached")
)

// ProgressHooks report transfer progress. Every field may be nil. Hooks are
// called from several goroutines at once (one per layer in flight).
type ProgressHooks struct {
	// Total is called once, before any transfer starts, with the number of
	// bytes that will move (0 when unknown).
	Total func(bytes int64)
	// Start is called when the transfer of the file or layer at path begins.
	Start func(path string, size int64)
	// Progress is called with the number of bytes just moved for path.
	Progress func(path string, n int64)
	// Done is called when the transfer of path ends, err nil on success.
	Done func(path string, err error)
}

// Options are shared by Push, Pull and Inspect. The zero value works: Docker
// config credentials, HTTPS except for loopback and private addresses, four
// transfers in parallel.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS to the registry.
	PlainHTTP bool
	// Transport is the base HTTP transport (default: a clone of
	// remote.DefaultTransport with large buffers).
	Transport http.RoundTripper
	// Keychain resolves credentials (default: authn.DefaultKeychain, the
	// Docker config).
	Keychain authn.Keychain
	// Jobs is the number of layers transferred in parallel (default 4).
	Jobs int
	// Platform is "os/arch[/variant][+accelerator]" (linux/arm64,
	// linux/amd64+cuda). Pull and Inspect use it to choose a manifest when a
	// reference names an image index (default: the index's only manifest,
	// else the running platform's); Push makes the model the variant for it
	// in the image index at the tag.
	Platform string
	// Progress hooks, for progress bars.
	Progress ProgressHooks
}

// PushOptions configure Push.
type PushOptions struct {
	Options
	// Name and Version go into the config's descriptor.
	Name, Version string
	// Format of the weights (onnx, safetensors, gguf, pytorch, …); default:
	// the largest weight file's, told by its first bytes (GGUF, safetensors,
	// PyTorch, ONNX) or else its extension.
	Format string
	// TrainedOn maps dataset names to their digests (sha256:…); written as
	// the manifest annotation dev.cairn.trained-on (a JSON object).
	TrainedOn map[string]string
	// Source (repository URL) and Revision (commit) of the code that produced
	// the model: the org.opencontainers.image.source/revision annotations and
	// the descriptor's sourceURL/revision.
	Source, Revision string
	// Annotations are added to the manifest.
	Annotations map[string]string
	// Kinds overrides the kind of layer of matching files: a glob (matched
	// against the relative path, then the base name) to one of KindWeight,
	// KindWeightConfig, KindDoc, KindCode, KindDataset.
	Kinds map[string]string
	// LayerFormat is how files become layers: LayerFormatRaw (""), one raw
	// layer per file; LayerFormatTar, one tar layer per file, for consumers
	// that read every layer as tar; LayerFormatKitOps, a KitOps ModelKit
	// (Kitfile config, KitOps tar layers) for kit. Tar layers are uploaded
	// without DigestCache and get no chunk index.
	LayerFormat string
	// Created is the descriptor's createdAt (default: SOURCE_DATE_EPOCH,
	// else the newest file's mtime, so one folder gives one digest).
	Created time.Time
	// DigestCache is a folder where Push remembers the digest of every file
	// it read (keyed by path, device, inode, size, mtime and ctime) and the
	// repositories it pushed it to. A later push of an unchanged file then
	// asks the registry first and skips the upload when the blob is there or
	// can be mounted from one of those repositories. It keeps the chunk
	// index of each large file too (one per path, ~35 bytes a chunk), so an
	// unchanged file is not chunked again either. Empty: every file is
	// uploaded (read once, hashed on the way) and chunked.
	DigestCache string
	// NoChunkIndex turns off the chunk index pushed for layers of at least
	// DeltaThreshold bytes (see ArtifactTypeChunkIndex), with which pulls
	// holding an earlier version download only the chunks that changed.
	NoChunkIndex bool
}

// PushResult is what Push made.
type PushResult struct {
	// Ref is the pinned reference: REPOSITORY@sha256:….
	Ref string `json:"ref"`
	// Digest of the manifest, or of the image index when pushed for a
	// platform.
	Digest string `json:"digest"`
	// Manifest is the digest of the variant's manifest when pushed for a
	// platform (Digest is then the index's).
	Manifest string `json:"manifest,omitempty"`
	// PlatformTag is the tag the variant's manifest is also pushed under
	// (see PlatformTag), when pushed for a platform.
	PlatformTag string `json:"platformTag,omitempty"`
	// Size is the total of the layers and the config, in bytes.
	Size int64 `json:"size"`
	// Files pushed, in manifest order.
	Files []File `json:"files"`
	// ChunkIndex is the digest of the chunk index manifest attached to the
	// model manifest (a referrer), when one was pushed.
	ChunkIndex string `json:"chunkIndex,omitempty"`
	// Warnings: what went wrong without failing the push (the chunk index).
	Warnings []string `json:"warnings,omitempty"`
}

// PullOptions configure Pull.
type PullOptions struct {
	Options
	// CacheDir, when set, keeps verified layer blobs under
	// CacheDir/blobs/sha256/<hex> for later pulls (agent slots share one
	// cache), and keeps interrupted downloads there to resume them. Without
	// it, interrupted downloads are kept in DIR/.cairn-pull and resumed from
	// there.
	CacheDir string
	// Limits bound what an artifact may make the pull write.
	Limits
	// NoDelta downloads large layers whole even when the artifact has a
	// chunk index and an earlier version is at hand (see DeltaStat).
	NoDelta bool
}

// Limits bound what a pull writes, so that an artifact cannot fill the disk
// or its inodes: going over one fails the pull with ErrLimit, and what the
// pull wrote is removed. The zero value gives the defaults.
type Limits struct {
	// MaxUnpackRatio: a tar layer unpacks (tar headers and file contents) to
	// at most this many times its compressed size, and at least 1 MiB
	// (default DefaultMaxUnpackRatio). Negative: no limit.
	MaxUnpackRatio float64
	// MaxFiles: the tar layers of a pull hold at most this many entries
	// altogether (default DefaultMaxFiles). Negative: no limit.
	MaxFiles int
	// DiskReserve is the free space, in bytes, a pull leaves on the disk of
	// DIR and of the cache: the declared sizes are checked against the free
	// space before anything is downloaded, and the free space again while tar
	// layers unpack (default DefaultDiskReserve). Negative: no check.
	DiskReserve int64
}

// Defaults of Limits.
const (
	DefaultMaxUnpackRatio = 20
	DefaultMaxFiles       = 100_000
	DefaultDiskReserve    = 64 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxUnpackRatio == 0 {
		l.MaxUnpackRatio = DefaultMaxUnpackRatio
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.DiskReserve == 0 {
		l.DiskReserve = DefaultDiskReserve
	}
	return l
}

// File is one file of a model.
type File struct {
	// Path relative to the model's root folder, with forward slashes.
	Path string `json:"path"`
	// Digest and Size of the file's content; for files extracted from a tar
	// layer, the digest of the file itself (not of the layer).
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Kind of layer the file came in: weight, weight.config, doc, code,
	// dataset (ModelPack) or the KitOps layer type.
	Kind string `json:"kind,omitempty"`
}

// PullResult is what Pull wrote.
type PullResult struct {
	// Digest of the manifest pulled.
	Digest string `json:"digest"`
	// Index is the digest of the image index the manifest was chosen from
	// by platform, when the reference named one.
	Index string `json:"index,omitempty"`
	// Files written under DIR.
	Files []File `json:"files"`
	// Kind of artifact: KindModelPack or KindKitOps.
	Kind string `json:"kind"`
	// DownloadedBytes came from the registry in this pull (layer bytes,
	// whole or by Range, and the chunk index); ReusedBytes are the bytes of
	// the layers' blobs it did not download (found in the cache, in DIR
	// already, kept from an interrupted download, or chunks of an earlier
	// version a layer was rebuilt from).
	DownloadedBytes int64 `json:"downloadedBytes"`
	ReusedBytes     int64 `json:"reusedBytes"`
	// Deltas says, for each layer of at least DeltaThreshold bytes that was
	// not already at hand, how much of it was rebuilt from chunks of an
	// earlier version and how much downloaded, or why it was downloaded
	// whole.
	Deltas []DeltaStat `json:"delta,omitempty"`
}

// Artifact kinds.
const (
	KindModelPack = "modelpack"
	KindKitOps    = "kitops"
	KindUnknown   = "unknown"
)

// Artifact describes a model artifact in a registry.
type Artifact struct {
	Ref             string            `json:"ref"`
	Digest          string            `json:"digest"`
	Index           string            `json:"index,omitempty"` // image index the manifest was chosen from
	Kind            string            `json:"kind"`
	MediaType       string            `json:"mediaType,omitempty"`
	ArtifactType    string            `json:"artifactType,omitempty"`
	ConfigMediaType string            `json:"configMediaType"`
	ConfigDigest    string            `json:"configDigest"`
	Config          json.RawMessage   `json:"config,omitempty"`
	Layers          []Layer           `json:"layers"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// Size is the total of the layers and the config, in bytes.
	Size int64 `json:"size"`
	// Variants are the manifests of the image index (Index), by platform.
	Variants []Variant `json:"variants,omitempty"`
}

// Variant is one manifest of an image index.
type Variant struct {
	Platform string `json:"platform,omitempty"` // os/arch[/variant][+accelerator]
	Digest   string `json:"digest"`
	Size     int64  `json:"size"` // of the manifest
}

// Layer is one layer of an artifact.
type Layer struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Path        string            `json:"path,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
