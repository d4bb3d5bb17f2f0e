package digest_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/digest"
)

func TestParse(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"", false},
		{"sha256:" + strings.Repeat("AB", 32), false},
		{"sha512:" + strings.Repeat("ab", 32), false},
		{"sha256:" + strings.Repeat("ab", 31), false},
		{strings.Repeat("ab", 32), false},
	} {
		d, err := digest.Parse(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if tc.ok && d.String() != tc.in {
			t.Errorf("Parse(%q) = %q", tc.in, d)
		}
	}
}

func TestForms(t *testing.T) {
	d := digest.FromBytes([]byte("hello"))
	const hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	for _, tc := range []struct{ name, got, want string }{
		{"String", d.String(), "sha256:" + hex},
		{"Hex", d.Hex(), hex},
		{"Short", d.Short(), "sha256:2cf24dba5fb0"},
		{"ShortHex", d.ShortHex(), "2cf24dba5fb0"},
		{"Key", d.Key("blobs"), "blobs/sha256/2c/" + hex},
		{"OfRef", digest.OfRef("r.example/m@sha256:" + hex).String(), "sha256:" + hex},
		{"OfRef unpinned", digest.OfRef("r.example/m:v1").String(), ""},
		{"Short commit", digest.Short("0123456789abcdef0123456789abcdef01234567"), "0123456789ab"},
		{"Short digest", digest.Short("sha256:" + hex), "sha256:2cf24dba5fb0"},
		{"Short zero", digest.Digest("").Short(), ""},
		{"Short of short", digest.Digest("sha256:ab").Short(), "sha256:ab"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0", 64))
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := digest.Parse(s)
		if err != nil {
			return
		}
		// A parsed digest round-trips through its key and short forms.
		if len(d.Hex()) != 64 || !strings.HasSuffix(d.Key("x"), d.Hex()) || !strings.HasPrefix(string(d), d.Short()) {
			t.Fatalf("parsed %q has inconsistent forms", s)
		}
		if digest.FromHash(mustHex(d.Hex())) != d {
			t.Fatalf("FromHash(Hex(%q)) differs", s)
		}
	})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
