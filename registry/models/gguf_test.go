package models

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// ggufTensor is one tensor of a generated GGUF file.
type ggufTensor struct {
	name  string
	dims  []uint64
	ggml  uint32
	bytes int // of data written for it (0: none)
}

// ggufBuilder writes GGUF files the way llama.cpp's gguf writer does:
// header, metadata, tensor infos, padding to the alignment, tensor data.
type ggufBuilder struct {
	b    bytes.Buffer
	wide bool
}

func (g *ggufBuilder) u32(v uint32) { g.b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (g *ggufBuilder) u64(v uint64) { g.b.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (g *ggufBuilder) size(v uint64) {
	if g.wide {
		g.u64(v)
	} else {
		g.u32(uint32(v))
	}
}
func (g *ggufBuilder) str(s string) { g.size(uint64(len(s))); g.b.WriteString(s) }

// kv writes one metadata pair of each kind of value cairn must step over.
func (g *ggufBuilder) metadata() int {
	g.str("general.architecture")
	g.u32(ggufString)
	g.str("llama")
	g.str("general.alignment")
	g.u32(ggufUint32)
	g.u32(32)
	g.str("llama.rope.freq_base")
	g.u32(ggufFloat32)
	g.u32(math.Float32bits(10000))
	g.str("general.file_type")
	g.u32(ggufUint64)
	g.u64(15)
	g.str("tokenizer.ggml.add_bos_token")
	g.u32(ggufBool)
	g.b.WriteByte(1)
	g.str("tokenizer.ggml.tokens")
	g.u32(ggufArray)
	g.u32(ggufString)
	g.size(3)
	for _, s := range []string{"<s>", "</s>", "hello"} {
		g.str(s)
	}
	g.str("tokenizer.ggml.scores")
	g.u32(ggufArray)
	g.u32(ggufFloat32)
	g.size(3)
	for range 3 {
		g.u32(0)
	}
	g.str("nested")
	g.u32(ggufArray)
	g.u32(ggufArray)
	g.size(2)
	for range 2 {
		g.u32(ggufInt16)
		g.size(2)
		g.b.Write([]byte{1, 0, 2, 0})
	}
	return 8
}

// ggufFile is a GGUF file of version v with the given tensors.
func ggufFile(v uint32, tensors []ggufTensor) []byte {
	g := &ggufBuilder{wide: v >= 2}
	var body ggufBuilder
	body.wide = g.wide
	kvs := body.metadata()
	var off uint64
	for _, t := range tensors {
		body.str(t.name)
		body.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			body.size(d)
		}
		body.u32(t.ggml)
		body.u64(off)
		off += uint64(t.bytes+31) &^ 31
	}
	g.b.WriteString(ggufMagic)
	g.u32(v)
	g.size(uint64(len(tensors)))
	g.size(uint64(kvs))
	g.b.Write(body.b.Bytes())
	for g.b.Len()%32 != 0 {
		g.b.WriteByte(0)
	}
	for _, t := range tensors {
		g.b.Write(make([]byte, (t.bytes+31)&^31))
	}
	return g.b.Bytes()
}

// testTensors is a small quantized llama: q4_k holds most parameters.
var testTensors = []ggufTensor{
	{name: "token_embd.weight", dims: []uint64{64, 1000}, ggml: 12, bytes: 36000},
	{name: "blk.0.attn_q.weight", dims: []uint64{64, 64}, ggml: 12, bytes: 2304},
	{name: "blk.0.attn_norm.weight", dims: []uint64{64}, ggml: 0, bytes: 256},
	{name: "output.weight", dims: []uint64{64, 1000}, ggml: 14, bytes: 52500},
}

func TestReadGGUF(t *testing.T) {
	want := map[string]int64{"q4_k": 64*1000 + 64*64, "float32": 64, "q6_k": 64 * 1000}
	trunc := ggufFile(3, testTensors)
	header := func(v uint32, tensors, kvs uint64) []byte {
		g := &ggufBuilder{wide: true}
		g.b.WriteString(ggufMagic)
		g.u32(v)
		g.u64(tensors)
		g.u64(kvs)
		return g.b.Bytes()
	}
	hugeString := append(header(3, 0, 1), binary.LittleEndian.AppendUint64(nil, 1<<40)...)
	hugeArray := header(3, 0, 1)
	hugeArray = append(hugeArray, binary.LittleEndian.AppendUint64(nil, 1)...)
	hugeArray = append(hugeArray, 'k', 9, 0, 0, 0, 6, 0, 0, 0)
	hugeArray = append(hugeArray, binary.LittleEndian.AppendUint64(nil, math.MaxUint64/2)...)
	deep := header(3, 0, 1)
	deep = append(deep, binary.LittleEndian.AppendUint64(nil, 1)...)
	deep = append(deep, 'k')
	deep = append(deep, 9, 0, 0, 0) // an array …
	for range 6 {
		deep = binary.LittleEndian.AppendUint32(deep, ggufArray)
		deep = binary.LittleEndian.AppendUint64(deep, 1) // … of one array …
	}
	overflow := ggufFile(3, []ggufTensor{{name: "x", dims: []uint64{1 << 32, 1 << 32}, ggml: 0}})

	cases := []struct {
		name string
		file []byte
		want map[string]int64
		err  bool
	}{
		{name: "v3", file: ggufFile(3, testTensors), want: want},
		{name: "v2", file: ggufFile(2, testTensors), want: want},
		{name: "v1, 32-bit counts", file: ggufFile(1, testTensors), want: want},
		{name: "bf16 and a type ggml added later", file: ggufFile(3, []ggufTensor{{name: "a", dims: []uint64{10, 10}, ggml: 30}, {name: "b", dims: []uint64{3}, ggml: 99}}),
			want: map[string]int64{"bfloat16": 100, "ggml99": 3}},
		{name: "no tensors", file: ggufFile(3, nil), want: map[string]int64{}},
		{name: "bad magic", file: append([]byte("GGUG"), trunc[4:]...), err: true},
		{name: "version 4", file: header(4, 0, 0), err: true},
		{name: "truncated in the tensor infos", file: trunc[:len(trunc)-(36000+2304+256+52500+400)], err: true},
		{name: "empty", file: nil, err: true},
		{name: "more tensors than allowed", file: header(3, maxGGUFTensors+1, 0), err: true},
		{name: "a string longer than the budget", file: hugeString, err: true},
		{name: "an array longer than the budget", file: hugeArray, err: true},
		{name: "arrays nested too deep", file: deep, err: true},
		{name: "tensor elements overflow", file: overflow, err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readGGUF(bytes.NewReader(tc.file))
			if tc.err {
				if err == nil || !errors.Is(err, errGGUF) {
					t.Fatalf("got %v, %v; want an errGGUF", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReadGGUFBounded: a header that never ends (an array of 2^40 empty
// strings) is read up to the budget and no further.
func TestReadGGUFBounded(t *testing.T) {
	g := &ggufBuilder{wide: true}
	g.b.WriteString(ggufMagic)
	g.u32(3)
	g.u64(0)
	g.u64(1)
	g.str("k")
	g.u32(ggufArray)
	g.u32(ggufString)
	g.u64(1 << 40)
	r := &countingReader{r: io.MultiReader(&g.b, zeros{})}
	if _, err := readGGUF(r); !errors.Is(err, errGGUF) {
		t.Fatalf("got %v", err)
	}
	if r.n > maxGGUFHeader+64<<10 { // the budget and one buffer
		t.Errorf("read %d bytes of an endless header, budget %d", r.n, maxGGUFHeader)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// FuzzReadGGUF: any input is refused or read within the budget, and what
// is read adds up (no negative counts).
func FuzzReadGGUF(f *testing.F) {
	f.Add(ggufFile(3, testTensors))
	f.Add(ggufFile(1, testTensors[:1]))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &countingReader{r: bytes.NewReader(b)}
		got, err := readGGUF(r)
		if err != nil {
			if !errors.Is(err, errGGUF) {
				t.Fatalf("error %v is not an errGGUF", err)
			}
			return
		}
		var total int64
		for dt, n := range got {
			if n < 0 || dt == "" {
				t.Fatalf("%q: %d parameters", dt, n)
			}
			total += n
			if total < 0 {
				t.Fatal("parameters overflow")
			}
		}
	})
}

// TestSniffFormat: the format comes from the weights' bytes, the extension
// only when they say nothing.
func TestSniffFormat(t *testing.T) {
	st := binary.LittleEndian.AppendUint64(nil, 2)
	st = append(st, "{}"...)
	var pt bytes.Buffer
	zw := zip.NewWriter(&pt)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store})
	w.Write([]byte{0x80, 2})
	zw.Close()
	var other bytes.Buffer
	zw = zip.NewWriter(&other)
	zw.Create("notes.txt")
	zw.Close()
	onnx := []byte("\x08\x07\x12\x07pytorch\x1a\x052.1.0")
	cases := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"gguf named .bin", "model.bin", ggufFile(3, testTensors), "gguf"},
		{"safetensors named .bin", "model.bin", st, "safetensors"},
		{"torch.save zip named .bin", "pytorch_model.bin", pt.Bytes(), "pytorch"},
		{"torch.save zip .pt", "model.pt", pt.Bytes(), "pytorch"},
		{"legacy torch pickle .bin", "pytorch_model.bin", []byte{0x80, 2, 0x8a, 0x0a}, "pytorch"},
		{"pickle .pkl stays pickle", "clf.pkl", []byte{0x80, 4, 0x95}, "pickle"},
		{"onnx without its extension", "model", onnx, "onnx"},
		{"onnx", "model.onnx", onnx, "onnx"},
		{"a zip that is no torch file, by extension", "model.pt", other.Bytes(), "pytorch"},
		{"text named .safetensors, by extension", "model.safetensors", []byte("wwwwwwwwwwww"), "safetensors"},
		{"unknown", "blob.dat", []byte("hello"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tc.file)
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			w := describeWeights([]source{{abs: p, rel: tc.file, size: int64(len(tc.data)), kind: KindWeight}})
			if w.format != tc.want {
				t.Errorf("format %q, want %q", w.format, tc.want)
			}
		})
	}
}

// TestGGUFParams: a pushed GGUF model gets format gguf, the paramSize its
// tensors add up to and the precision most of them have.
func TestGGUFParams(t *testing.T) {
	src := writeTree(t, map[string]string{"model-q4_k_m.gguf": string(ggufFile(3, testTensors)), "README.md": "doc"})
	reg := newRegistry(t, nil)
	res, err := Push(bg, reg+"/gguf/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := configOf(t, res.Ref)
	if cfg.Config.Format != "gguf" || cfg.Config.ParamSize != "132.2k" || cfg.Config.Precision != "q4_k" {
		t.Errorf("config %+v, want gguf, 132.2k, q4_k", cfg.Config)
	}
}
