package model

import (
	"math"
	"testing"

	"gotune/compute"
)

// The reference inverse frequencies below are written independently, in
// float64, from the formulas of transformers' modeling_rope_utils
// (_compute_*_parameters; yarn as of the fix for transformers issue #38224,
// where a configured factor is always used). With dim the rotary width
// (head_dim·partial_rotary_factor) and i = 0 … dim/2−1:
//
//	default:  f_i = θ^(−2i/dim)
//	linear:   f_i / factor
//	dynamic:  for seq_len > max_position_embeddings (M), θ is first replaced by
//	          θ·(factor·seq_len/M − (factor−1))^(dim/(dim−2))
//	llama3:   with L = original_max_position_embeddings, λ_i = 2π/f_i,
//	          λ_i < L/high_freq_factor  → f_i
//	          λ_i > L/low_freq_factor   → f_i/factor
//	          otherwise s = (L/λ_i − low)/(high − low), (1−s)·f_i/factor + s·f_i
//	          attention factor 1
//	yarn:     with L = original_max_position_embeddings (M when absent),
//	          corr(r) = dim·ln(L/(2πr)) / (2 ln θ),
//	          lo = max(floor(corr(beta_fast=32)), 0), hi = min(ceil(corr(beta_slow=1)), dim−1)
//	          (no floor/ceil when truncate is false; hi += 0.001 when lo == hi),
//	          ramp_i = clamp((i − lo)/(hi − lo), 0, 1),
//	          f'_i = (f_i/factor)·ramp_i + f_i·(1 − ramp_i),
//	          attention factor = attention_factor if given, else
//	          m(factor, mscale)/m(factor, mscale_all_dim) when both are non-zero,
//	          else m(factor, 1), with m(s, k) = 1 if s ≤ 1 else 0.1·k·ln s + 1;
//	          cos and sin are multiplied by it.
//
// transformers computes f_i in float32, so agreement is to float32
// rounding (≈1e-6 relative after the power), not bitwise.

func refDefault(theta float64, dim int) []float64 {
	f := make([]float64, dim/2)
	for i := range f {
		f[i] = math.Pow(theta, -float64(2*i)/float64(dim))
	}
	return f
}

func refLlama3(theta float64, dim int, factor, low, high, L float64) []float64 {
	f := refDefault(theta, dim)
	for i, fi := range f {
		lambda := 2 * math.Pi / fi
		switch {
		case lambda < L/high:
		case lambda > L/low:
			f[i] = fi / factor
		default:
			s := (L/lambda - low) / (high - low)
			f[i] = (1-s)*fi/factor + s*fi
		}
	}
	return f
}

func refYarn(theta float64, dim int, factor, L, betaFast, betaSlow float64, truncate bool, attn, mscale, mscaleAll float64) ([]float64, float64) {
	m := func(s, k float64) float64 {
		if s <= 1 {
			return 1
		}
		return 0.1*k*math.Log(s) + 1
	}
	if attn == 0 {
		if mscale != 0 && mscaleAll != 0 {
			attn = m(factor, mscale) / m(factor, mscaleAll)
		} else {
			attn = m(factor, 1)
		}
	}
	corr := func(r float64) float64 { return float64(dim) * math.Log(L/(2*math.Pi*r)) / (2 * math.Log(theta)) }
	lo, hi := corr(betaFast), corr(betaSlow)
	if truncate {
		lo, hi = math.Floor(lo), math.Ceil(hi)
	}
	lo, hi = math.Max(lo, 0), math.Min(hi, float64(dim-1))
	if lo == hi {
		hi += 0.001
	}
	f := refDefault(theta, dim)
	for i, fi := range f {
		ramp := math.Min(math.Max((float64(i)-lo)/(hi-lo), 0), 1)
		f[i] = fi/factor*ramp + fi*(1-ramp)
	}
	return f, attn
}

func TestRopeInverseFrequencies(t *testing.T) {
	cases := []struct {
		name   string
		json   string
		seqLen int
		want   []float64
		scale  float64
	}{
		{"default", `{"rope_theta":1000000}`, 100, refDefault(1e6, 128), 1},
		{"linear", `{"rope_theta":10000,"rope_scaling":{"type":"linear","factor":4}}`, 100,
			scaled(refDefault(1e4, 128), 0.25), 1},
		{"dynamic-inside", `{"rope_theta":10000,"rope_scaling":{"rope_type":"dynamic","factor":2}}`, 4096,
			refDefault(1e4, 128), 1},
		{"dynamic-beyond", `{"rope_theta":10000,"rope_scaling":{"rope_type":"dynamic","factor":2}}`, 10000,
			refDefault(1e4*math.Pow(2*10000.0/4096-1, 128.0/126), 128), 1},
		// Llama 3.1's published values.
		{"llama3", `{"rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,
			"high_freq_factor":4,"original_max_position_embeddings":8192}}`, 100,
			refLlama3(5e5, 128, 8, 1, 4, 8192), 1},
		// Qwen's published long-context setting.
		{"yarn", `{"rope_theta":1000000,"rope_scaling":{"rope_type":"yarn","factor":4,
			"original_max_position_embeddings":32768}}`, 100,
			first(refYarn(1e6, 128, 4, 32768, 32, 1, true, 0, 0, 0)), second(refYarn(1e6, 128, 4, 32768, 32, 1, true, 0, 0, 0))},
		{"yarn-mscale", `{"rope_theta":10000,"rope_scaling":{"type":"yarn","factor":40,"beta_fast":16,"beta_slow":2,
			"mscale":0.707,"mscale_all_dim":1.0,"original_max_position_embeddings":4096}}`, 100,
			first(refYarn(1e4, 128, 40, 4096, 16, 2, true, 0, 0.707, 1)), second(refYarn(1e4, 128, 40, 4096, 16, 2, true, 0, 0.707, 1))},
		{"yarn-no-truncate-attn", `{"rope_parameters":{"rope_type":"yarn","rope_theta":150000,"factor":8,"truncate":false,
			"attention_factor":1.25,"original_max_position_embeddings":4096}}`, 100,
			first(refYarn(1.5e5, 128, 8, 4096, 32, 1, false, 1.25, 0, 0)), 1.25},
		{"yarn-default-original", `{"rope_theta":10000,"rope_scaling":{"rope_type":"yarn","factor":2}}`, 100,
			first(refYarn(1e4, 128, 2, 4096, 32, 1, true, 0, 0, 0)), second(refYarn(1e4, 128, 2, 4096, 32, 1, true, 0, 0, 0))},
		{"partial", `{"rope_theta":10000,"partial_rotary_factor":0.25}`, 100, refDefault(1e4, 32), 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js := `{"model_type":"llama","vocab_size":10,"hidden_size":1024,"intermediate_size":8,"num_hidden_layers":1,
				"num_attention_heads":8,"max_position_embeddings":4096,` + c.json[1:]
			cfg, err := ParseConfig("config.json", []byte(js))
			if err != nil {
				t.Fatal(err)
			}
			got, scale := cfg.invFreq(c.seqLen)
			if len(got) != len(c.want) {
				t.Fatalf("%d frequencies, want %d", len(got), len(c.want))
			}
			for i := range got {
				if math.Abs(got[i]-c.want[i]) > 2e-6*c.want[i] {
					t.Errorf("inv_freq[%d] = %.9g, want %.9g", i, got[i], c.want[i])
				}
			}
			if math.Abs(scale-c.scale) > 1e-12 {
				t.Errorf("attention factor %v, want %v", scale, c.scale)
			}
			// The table holds cos/sin of position·f, times the factor, with
			// the frequencies repeated in the two halves of the rotary part
			// and identity past it. (A table of 40 positions is within
			// max_position_embeddings, where dynamic scaling is off.)
			if c.seqLen > cfg.MaxPositions {
				return
			}
			tab := cfg.NewRopeTable(40)
			hd, half := cfg.HeadDim, len(got)
			for _, p := range []int{0, 1, 7, 39} {
				for i := 0; i < hd; i++ {
					wc, ws := 1.0, 0.0
					if i < 2*half {
						a := float64(p) * c.want[i%half]
						wc, ws = math.Cos(a)*c.scale, math.Sin(a)*c.scale
					}
					gc, gs := float64(tab.Cos[p*hd+i]), float64(tab.Sin[p*hd+i])
					if math.Abs(gc-wc) > 1e-5 || math.Abs(gs-ws) > 1e-5 {
						t.Fatalf("table at position %d dim %d: cos %v sin %v, want %v %v", p, i, gc, gs, wc, ws)
					}
				}
			}
		})
	}
}

func scaled(v []float64, k float64) []float64 {
	for i := range v {
		v[i] *= k
	}
	return v
}

func first(f []float64, _ float64) []float64 { return f }
func second(_ []float64, s float64) float64  { return s }

// TestDynamicRopeTablesDoNotAccumulate: generating past
// max_position_embeddings with dynamic NTK scaling needs a new table for
// every length, but only the current one is ever used again. Keeping them
// all costs Σ n·head_dim·8 bytes: about 130 GB to decode from 4k to 16k
// positions with head_dim 128. Past the 256 positions a device copy's
// tables cover at least, its memory grows by the current table's growth
// only.
func TestDynamicRopeTablesDoNotAccumulate(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		js := `{"model_type":"llama","vocab_size":11,"hidden_size":16,"intermediate_size":8,"num_hidden_layers":1,
		"num_attention_heads":2,"max_position_embeddings":8,"rope_scaling":{"rope_type":"dynamic","factor":2}}`
		cfg, err := ParseConfig("config.json", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		m := New(cfg)
		m.RandomInit(1)
		const from, to = 260, 300
		s := newSession(t, newDM(t, m, be, DeviceOptions{Inference: true}), to)
		var at int64
		for i := 0; i < to; i++ {
			if i == from {
				at = be.MemStats().InUse
			}
			if _, err := s.Feed([]int32{int32(i % 11)}); err != nil {
				t.Fatal(err)
			}
		}
		// The current table (cos and sin, f32, head_dim per position) and
		// the attention scores grow by a row per position; keeping every
		// table would add Σ n·head_dim·8 bytes, about 700 KB here.
		growth := int64(2 * (to - from) * cfg.HeadDim * 4)
		if got := be.MemStats().InUse - at; got > 2*growth {
			t.Errorf("decoding from %d to %d positions (max_position_embeddings 8) took %d more bytes; the table's growth is %d", from, to, got, growth)
		}
	})
}
