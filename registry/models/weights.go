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
// number of parameters (the tensors' elements) and the dtype holding most of
// them, in ModelPack's spelling (bf16, fp16, fp32, int8, …).
func safetensorsParams(file string) (params int64, precision string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return 0, "", fmt.Errorf("safetensors header of %s: %w", file, err)
	}
	if n == 0 || n > maxSafetensorsHeader {
		return 0, "", fmt.Errorf("safetensors header of %s: length %d", file, n)
	}
	var header map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(f, int64(n))).Decode(&header); err != nil {
		return 0, "", fmt.Errorf("safetensors header of %s: %w", file, err)
	}
	byType := map[string]int64{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			DType string  `json:"dtype"`
			Shape []int64 `json:"shape"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return 0, "", fmt.Errorf("safetensors tensor %q of %s: %w", name, file, err)
		}
		e := int64(1)
		for _, d := range t.Shape {
			if d < 0 || d > 0 && e > math.MaxInt64/d {
				return 0, "", fmt.Errorf("safetensors tensor %q of %s: shape %v out of range", name, file, t.Shape)
			}
			e *= d
		}
		if params > math.MaxInt64-e {
			return 0, "", fmt.Errorf("safetensors header of %s: too many parameters", file)
		}
		params += e
		byType[t.DType] += e
	}
	var best int64 = -1
	for dt, e := range byType {
		if e > best || e == best && dt < precision {
			best, precision = e, dt
		}
	}
	return params, dtypeName(precision), nil
}

// dtypeName spells a safetensors dtype as ModelPack's precision.
func dtypeName(dt string) string {
	switch dt {
	case "":
		return ""
	case "F64":
		return "fp64"
	case "F32":
		return "fp32"
	case "F16":
		return "fp16"
	case "BF16":
		return "bf16"
	case "F8_E4M3", "F8_E5M2":
		return "fp8"
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
