package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Digest is a content digest, "sha256:<64 lower-case hex>". The zero value
// means none.
type Digest string

// Algorithm is the one algorithm cairn writes and accepts.
const Algorithm = "sha256"

const prefix = Algorithm + ":"

// Parse checks that s is sha256:<64 lower-case hex> and returns it.
func Parse(s string) (Digest, error) {
	hexd, ok := strings.CutPrefix(s, prefix)
	if !ok || len(hexd) != 64 {
		return "", fmt.Errorf("invalid digest %q: want sha256:<64 lowercase hex>", s)
	}
	for i := 0; i < len(hexd); i++ {
		if c := hexd[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("invalid digest %q: want sha256:<64 lowercase hex>", s)
		}
	}
	return Digest(s), nil
}

// Check reports whether s is a valid digest.
func Check(s string) error {
	_, err := Parse(s)
	return err
}

// FromBytes returns the digest of b.
func FromBytes(b []byte) Digest {
	s := sha256.Sum256(b)
	return Digest(prefix + hex.EncodeToString(s[:]))
}

// FromHash returns the digest of a finished sha256 sum.
func FromHash(sum []byte) Digest { return Digest(prefix + hex.EncodeToString(sum)) }

// OfRef returns the digest of a digest-pinned reference (repo@sha256:…), or
// "" when the reference is not pinned. It does not validate the digest.
func OfRef(ref string) Digest {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		return Digest(ref[i+1:])
	}
	return ""
}

// String returns the digest as written.
func (d Digest) String() string { return string(d) }

// Hex returns the part after the algorithm ("" for the zero digest); a
// string without an algorithm is returned as is.
func (d Digest) Hex() string {
	if _, h, ok := strings.Cut(string(d), ":"); ok {
		return h
	}
	return string(d)
}

// ShortLen is how many hex digits the short forms keep.
const ShortLen = 12

// Short abbreviates a digest to its algorithm and the first 12 hex digits
// (sha256:2d711642b726) for messages; anything shorter is returned as is.
func (d Digest) Short() string {
	if i := strings.IndexByte(string(d), ':'); i >= 0 && len(d) > i+1+ShortLen {
		return string(d[:i+1+ShortLen])
	}
	return string(d)
}

// ShortHex is the first 12 hex digits alone (2d711642b726), for tables.
func (d Digest) ShortHex() string {
	h := d.Hex()
	if len(h) > ShortLen {
		return h[:ShortLen]
	}
	return h
}

// Key is where content with this digest is stored under top:
// top/sha256/<2 hex>/<64 hex>.
func (d Digest) Key(top string) string {
	h := d.Hex()
	if len(h) < 2 {
		return top + "/" + Algorithm + "/" + h
	}
	return top + "/" + Algorithm + "/" + h[:2] + "/" + h
}

// Short abbreviates a digest or a Git commit for messages: a digest as
// Digest.Short, a 40- or 64-hex commit to its first 12 digits.
func Short(s string) string {
	if strings.IndexByte(s, ':') >= 0 {
		return Digest(s).Short()
	}
	if len(s) > ShortLen {
		return s[:ShortLen]
	}
	return s
}
