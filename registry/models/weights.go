package models

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// maxSafetensorsHeader bounds the JSON header read from a .safetensors file
// (the format caps it at 100 MB).
const maxSafetensorsHeader = 100 << 20

// safetensorsParams reads the header of a .safetensors file and returns the
// number of parameters (the tensors' elements) by dtype in ModelPack's
// spelling (bfloat16, float16, float32, int8, …; dtypeName).
func safetensorsParams(file string) (map[string]int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("safetensors header of %s: %w", file, err)
	}
	if n == 0 || n > maxSafetensorsHeader {
		return nil, fmt.Errorf("safetensors header of %s: length %d", file, n)
	}
	var header map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(f, int64(n))).Decode(&header); err != nil {
		return nil, fmt.Errorf("safetensors header of %s: %w", file, err)
	}
	byType := map[string]int64{}
	var params int64
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			DType string  `json:"dtype"`
			Shape []int64 `json:"shape"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("safetensors tensor %q of %s: %w", name, file, err)
		}
		e := int64(1)
		for _, d := range t.Shape {
			if d < 0 || d > 0 && e > math.MaxInt64/d {
				return nil, fmt.Errorf("safetensors tensor %q of %s: shape %v out of range", name, file, t.Shape)
			}
			e *= d
		}
		if params > math.MaxInt64-e {
			return nil, fmt.Errorf("safetensors header of %s: too many parameters", file)
		}
		params += e
		byType[dtypeName(t.DType)] += e
	}
	return byType, nil
}

// weightInfo is what the weight files say about a model: its format and,
// from safetensors and GGUF headers, its parameters and precision.
type weightInfo struct {
	format    string
	params    int64
	precision string
}

// describeWeights reads the weight files of a push. The format is the one
// of the largest weight file whose format is known, by its content
// (sniffFormat) or else its extension: a small .onnx next to a large
// .safetensors does not make the model onnx. The parameters add up the
// tensors of every safetensors and GGUF weight file whose header reads; the
// precision is the one most of them have. A file whose header does not read
// adds nothing.
func describeWeights(srcs []source) weightInfo {
	var w weightInfo
	var largest int64 = -1
	byType := map[string]int64{}
	for _, s := range srcs {
		if s.kind != KindWeight {
			continue
		}
		f := sniffFormat(s.abs)
		switch ext := formatOf(s.rel); {
		case f == "":
			f = ext
		case f == "pickle" && ext != "":
			f = ext // .pt, .pkl, .joblib
		case f == "pickle":
			f = "pytorch" // pytorch_model.bin
		}
		if f != "" && s.size > largest {
			w.format, largest = f, s.size
		}
		var n map[string]int64
		var err error
		switch f {
		case "safetensors":
			n, err = safetensorsParams(s.abs)
		case "gguf":
			n, err = ggufParams(s.abs)
		default:
			continue
		}
		if err != nil {
			continue // not a readable header: no paramSize from it
		}
		for dt, e := range n {
			if w.params > math.MaxInt64-e {
				continue
			}
			w.params += e
			byType[dt] += e
		}
	}
	var best int64 = -1
	for dt, e := range byType {
		if e > best || e == best && dt < w.precision {
			best, w.precision = e, dt
		}
	}
	return w
}

// sniffFormat tells a weight file's format by its first bytes: GGUF by its
// magic, safetensors by its header length and opening brace, PyTorch by
// the zip archive torch.save writes (its first entry is …/data.pkl), a
// pickle stream as "pickle", ONNX by the ir_version field a ModelProto starts with.
// It answers "" when it cannot tell.
func sniffFormat(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	return sniffBytes(b, fi.Size())
}

// sniffBytes is sniffFormat on the first bytes b of a file of size bytes.
func sniffBytes(b []byte, size int64) string {
	switch {
	case len(b) >= 8 && string(b[:4]) == ggufMagic:
		if v := binary.LittleEndian.Uint32(b[4:8]); v >= 1 && v <= 3 {
			return "gguf"
		}
	case len(b) >= 9 && b[8] == '{':
		if n := binary.LittleEndian.Uint64(b); n >= 2 && n <= maxSafetensorsHeader && int64(n) <= size-8 {
			return "safetensors"
		}
	case len(b) >= 30 && string(b[:4]) == "PK\x03\x04":
		// A zip's first local header: the name follows at offset 30.
		nameLen := int(binary.LittleEndian.Uint16(b[26:28]))
		if 30+nameLen <= len(b) {
			name := string(b[30 : 30+nameLen])
			if name == "data.pkl" || strings.HasSuffix(name, "/data.pkl") {
				return "pytorch"
			}
		}
	case len(b) >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5:
		return "pickle" // torch.save's legacy format, or pickle, joblib
	case len(b) >= 4 && b[0] == 0x08:
		// ModelProto: field 1 (ir_version, a small varint), then another
		// length-delimited field (producer_name, graph, opset_import, …).
		if v := b[1]; v >= 1 && v < 0x80 {
			switch b[2] {
			case 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2:
				return "onnx"
			}
		}
	}
	return ""
}

// dtypeName spells a safetensors dtype as ModelPack's precision, in the
// names of the model-spec's precision table (docs/config.md): float32,
// bfloat16, float8_e4m3, int8, uint8, bool, …, the names modctl writes (it
// copies a Hugging Face config's torch_dtype). A dtype the table lacks
// (F8_E8M0, F4, …) is lowercased.
func dtypeName(dt string) string {
	switch dt {
	case "":
		return ""
	case "F64":
		return "float64"
	case "F32":
		return "float32"
	case "F16":
		return "float16"
	case "BF16":
		return "bfloat16"
	case "F8_E4M3":
		return "float8_e4m3"
	case "F8_E5M2":
		return "float8_e5m2"
	case "BOOL":
		return "bool"
	case "C64":
		return "complex64"
	}
	if v, ok := strings.CutPrefix(dt, "I"); ok {
		return "int" + v
	}
	if v, ok := strings.CutPrefix(dt, "U"); ok {
		return "uint" + v
	}
	return strings.ToLower(dt)
}

// paramSize spells a parameter count as ModelPack's paramSize: 7b, 1.5b,
// 350m, 12k.
func paramSize(n int64) string {
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e12, "t"}, {1e9, "b"}, {1e6, "m"}, {1e3, "k"}} {
		if float64(n) >= u.div {
			return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/u.div), "0"), ".") + u.unit
		}
	}
	return fmt.Sprint(n)
}
