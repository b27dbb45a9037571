package export

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gotune/gguf"
	"gotune/safetensors"
)

// ParseSize reads a size as transformers' max_shard_size spells it: a number
// of bytes, or a number with KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB
// (powers of 1024), e.g. "5GB", "500MiB".
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KB, MB, GB, KiB, MiB or GiB", s)
	}
	return int64(v * mult), nil
}

// ParseDType reads f32, bf16 or f16 (or float32, bfloat16, float16).
func ParseDType(s string) (safetensors.DType, error) {
	switch strings.ToLower(s) {
	case "f32", "fp32", "float32":
		return safetensors.F32, nil
	case "bf16", "bfloat16":
		return safetensors.BF16, nil
	case "f16", "fp16", "float16":
		return safetensors.F16, nil
	}
	return "", fmt.Errorf("dtype %q: want f32, bf16 or f16", s)
}

// ParseGGUFType reads f32, f16, bf16, q8_0, q4_0 or q4_k.
func ParseGGUFType(s string) (gguf.TensorType, error) {
	switch strings.ToLower(s) {
	case "f32":
		return gguf.F32, nil
	case "f16":
		return gguf.F16, nil
	case "bf16":
		return gguf.BF16, nil
	case "q8_0":
		return gguf.Q8_0, nil
	case "q4_0":
		return gguf.Q4_0, nil
	case "q4_k":
		return gguf.Q4_K, nil
	}
	return 0, fmt.Errorf("GGUF type %q: want f32, f16, bf16, q8_0, q4_0 or q4_k", s)
}
