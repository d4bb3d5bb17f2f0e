package models

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// GGUF (ggml's model file, llama.cpp): magic "GGUF", a version, the tensor
// and metadata counts, the metadata key/value pairs, then one info per
// tensor (name, dimensions, ggml type, offset) before the aligned data.
// Version 1 counts and sizes in uint32, versions 2 and 3 in uint64.
const ggufMagic = "GGUF"

// Bounds of the GGUF header reader: a hostile or broken file makes it fail,
// never read or allocate past them.
const (
	maxGGUFHeader  = 64 << 20 // bytes of metadata and tensor infos read at most
	maxGGUFTensors = 1 << 20
	maxGGUFKVs     = 1 << 20
	maxGGUFDims    = 8 // ggml has 4
	maxGGUFDepth   = 4 // arrays of arrays
)

var errGGUF = errors.New("not a readable GGUF header")

// GGUF metadata value types.
const (
	ggufUint8 = iota
	ggufInt8
	ggufUint16
	ggufInt16
	ggufUint32
	ggufInt32
	ggufFloat32
	ggufBool
	ggufString
	ggufArray
	ggufUint64
	ggufInt64
	ggufFloat64
)

// ggufFixedSize is the size of a fixed-size metadata value type (0: not one).
func ggufFixedSize(t uint32) int64 {
	switch t {
	case ggufUint8, ggufInt8, ggufBool:
		return 1
	case ggufUint16, ggufInt16:
		return 2
	case ggufUint32, ggufInt32, ggufFloat32:
		return 4
	case ggufUint64, ggufInt64, ggufFloat64:
		return 8
	}
	return 0
}

// ggmlTypes names the ggml tensor types by their number (ggml.h); gaps are
// types ggml removed.
var ggmlTypes = map[uint32]string{
	0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 9: "q8_1",
	10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k", 15: "q8_k",
	16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s", 20: "iq4_nl", 21: "iq3_s", 22: "iq2_s", 23: "iq4_xs",
	24: "i8", 25: "i16", 26: "i32", 27: "i64", 28: "f64", 29: "iq1_m", 30: "bf16",
	34: "tq1_0", 35: "tq2_0", 39: "mxfp4",
}

// ggmlPrecision spells a ggml tensor type as ModelPack's precision: the
// float and integer types in the model-spec's names (float32, bfloat16,
// int8, …; see dtypeName), quantized types, which its table lacks, by their
// ggml name (q4_k, q8_0, …).
func ggmlPrecision(t uint32) string {
	n, ok := ggmlTypes[t]
	if !ok {
		return fmt.Sprintf("ggml%d", t)
	}
	switch n {
	case "f32", "f16", "f64", "bf16", "i8", "i16", "i32", "i64":
		return dtypeName(strings.ToUpper(n)) // the safetensors dtype of that name
	}
	return n
}

// ggufParams reads the header of a GGUF file and returns the number of
// parameters (the tensors' elements) by ggml type in ModelPack's spelling.
func ggufParams(file string) (map[string]int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byType, err := readGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("gguf header of %s: %w", file, err)
	}
	return byType, nil
}

// ggufReader reads little-endian GGUF fields within a byte budget.
type ggufReader struct {
	r    *bufio.Reader
	left int64 // bytes of the budget not read yet
	wide bool  // version 2+: uint64 counts and lengths
	buf  [8]byte
}

func (g *ggufReader) take(n int64) error {
	if n < 0 || n > g.left {
		return fmt.Errorf("%w: longer than the %d bytes a header may have", errGGUF, int64(maxGGUFHeader))
	}
	g.left -= n
	return nil
}

func (g *ggufReader) read(n int) ([]byte, error) {
	if err := g.take(int64(n)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(g.r, g.buf[:n]); err != nil {
		return nil, fmt.Errorf("%w: %w", errGGUF, noEOF(err))
	}
	return g.buf[:n], nil
}

func (g *ggufReader) u32() (uint32, error) {
	b, err := g.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (g *ggufReader) u64() (uint64, error) {
	b, err := g.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// size reads a count or length: uint64, or uint32 in version 1.
func (g *ggufReader) size() (uint64, error) {
	if !g.wide {
		v, err := g.u32()
		return uint64(v), err
	}
	return g.u64()
}

// skip discards n bytes of the budget.
func (g *ggufReader) skip(n uint64) error {
	if n > math.MaxInt64 {
		return g.take(-1)
	}
	if err := g.take(int64(n)); err != nil {
		return err
	}
	if _, err := g.r.Discard(int(n)); err != nil {
		return fmt.Errorf("%w: %w", errGGUF, noEOF(err))
	}
	return nil
}

// skipString discards a length-prefixed string.
func (g *ggufReader) skipString() error {
	n, err := g.size()
	if err != nil {
		return err
	}
	return g.skip(n)
}

// skipValue discards a metadata value of type t.
func (g *ggufReader) skipValue(t uint32, depth int) error {
	if n := ggufFixedSize(t); n > 0 {
		return g.skip(uint64(n))
	}
	switch t {
	case ggufString:
		return g.skipString()
	case ggufArray:
		if depth >= maxGGUFDepth {
			return fmt.Errorf("%w: arrays nested deeper than %d", errGGUF, maxGGUFDepth)
		}
		et, err := g.u32()
		if err != nil {
			return err
		}
		n, err := g.size()
		if err != nil {
			return err
		}
		if es := ggufFixedSize(et); es > 0 {
			if n > math.MaxInt64/uint64(es) {
				return g.take(-1)
			}
			return g.skip(n * uint64(es))
		}
		if et != ggufString && et != ggufArray {
			return fmt.Errorf("%w: array of unknown type %d", errGGUF, et)
		}
		// Each element takes at least 4 bytes of the budget, so the loop is
		// bounded by it.
		for i := uint64(0); i < n; i++ {
			if err := g.skipValue(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: metadata of unknown type %d", errGGUF, t)
}

// readGGUF reads a GGUF header from r and returns the tensors' elements by
// precision. It reads at most maxGGUFHeader bytes and allocates nothing in
// proportion to what the header declares.
func readGGUF(r io.Reader) (map[string]int64, error) {
	g := &ggufReader{r: bufio.NewReaderSize(r, 64<<10), left: maxGGUFHeader}
	magic, err := g.read(4)
	if err != nil {
		return nil, err
	}
	if string(magic) != ggufMagic {
		return nil, fmt.Errorf("%w: magic %q", errGGUF, magic)
	}
	version, err := g.u32()
	if err != nil {
		return nil, err
	}
	if version < 1 || version > 3 {
		return nil, fmt.Errorf("%w: version %d", errGGUF, version)
	}
	g.wide = version >= 2
	tensors, err := g.size()
	if err != nil {
		return nil, err
	}
	kvs, err := g.size()
	if err != nil {
		return nil, err
	}
	if tensors > maxGGUFTensors || kvs > maxGGUFKVs {
		return nil, fmt.Errorf("%w: %d tensors, %d metadata pairs", errGGUF, tensors, kvs)
	}
	for i := uint64(0); i < kvs; i++ {
		if err := g.skipString(); err != nil { // the key
			return nil, err
		}
		t, err := g.u32()
		if err != nil {
			return nil, err
		}
		if err := g.skipValue(t, 0); err != nil {
			return nil, err
		}
	}
	byType := map[string]int64{}
	var total int64
	for i := uint64(0); i < tensors; i++ {
		if err := g.skipString(); err != nil { // the name
			return nil, err
		}
		nd, err := g.u32()
		if err != nil {
			return nil, err
		}
		if nd > maxGGUFDims {
			return nil, fmt.Errorf("%w: tensor %d has %d dimensions", errGGUF, i, nd)
		}
		e := int64(1)
		for d := uint32(0); d < nd; d++ {
			v, err := g.size()
			if err != nil {
				return nil, err
			}
			if v > math.MaxInt64 || v > 0 && e > math.MaxInt64/int64(v) {
				return nil, fmt.Errorf("%w: tensor %d is too large", errGGUF, i)
			}
			e *= int64(v)
		}
		t, err := g.u32()
		if err != nil {
			return nil, err
		}
		if _, err := g.u64(); err != nil { // the offset
			return nil, err
		}
		if total > math.MaxInt64-e {
			return nil, fmt.Errorf("%w: too many parameters", errGGUF)
		}
		total += e
		byType[ggmlPrecision(t)] += e
	}
	return byType, nil
}

// noEOF turns a short read's io.EOF into io.ErrUnexpectedEOF: a header
// that ends early is truncated.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
