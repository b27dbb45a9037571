package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// ropeConfigs builds one small config.json per rope type, on different
// model types so that biases, QK-norm and partial rotation are all on the
// incremental path. head_dim 8 with theta 10000 gives wavelengths 6.3, 63,
// 628 and 6283, which straddle the llama3 and yarn band edges chosen below.
var ropeConfigs = []struct{ name, json string }{
	{"default-qwen3", `{"model_type":"qwen3","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"head_dim":8,
		"max_position_embeddings":256,"rope_theta":10000,"tie_word_embeddings":true}`},
	{"linear-llama", `{"model_type":"llama","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":3,
		"max_position_embeddings":256,"rope_theta":10000,"rope_scaling":{"type":"linear","factor":2.5}}`},
	{"dynamic-mistral", `{"model_type":"mistral","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":1,
		"max_position_embeddings":256,"rope_theta":10000,"rope_scaling":{"rope_type":"dynamic","factor":2}}`},
	{"llama3-llama", `{"model_type":"llama","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"attention_bias":true,
		"max_position_embeddings":256,"rope_theta":10000,"rope_scaling":{"rope_type":"llama3","factor":8,
		"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`},
	{"yarn-qwen2", `{"model_type":"qwen2","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,
		"max_position_embeddings":256,"rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":4,
		"original_max_position_embeddings":64}}`},
	{"yarn-partial-llama", `{"model_type":"llama","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":3,"num_key_value_heads":1,"partial_rotary_factor":0.5,
		"max_position_embeddings":256,"rope_theta":10000,"rope_scaling":{"type":"yarn","factor":3,
		"original_max_position_embeddings":32,"mscale":0.7,"mscale_all_dim":1}}`},
	// The new families: sliding windows and soft caps on the cached path,
	// Gemma 3's local rope, phi3's fused projections.
	{"gemma2", familyConfigs["gemma2"]},
	{"gemma3", familyConfigs["gemma3"]},
	{"qwen3_moe", familyConfigs["qwen3_moe"]},
	{"mixtral", familyConfigs["mixtral"]},
	{"fused-phi3", `{"model_type":"phi3","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"partial_rotary_factor":0.5,
		"max_position_embeddings":256,"rope_theta":10000}`},
}

func ropeModel(t *testing.T, name, js string) *Model {
	t.Helper()
	cfg, err := ParseConfig(name+"/config.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(11)
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range m.Params() {
		if len(p.Shape) == 1 {
			for i := range p.Data {
				p.Data[i] += float32(0.2 * r.NormFloat64())
			}
		}
	}
	// Larger embeddings make the logits depend strongly on each token.
	for i := range m.Embed.Data {
		m.Embed.Data[i] *= 20
	}
	return m
}

func relErr32(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// TestSessionMatchesFullForward: the logits after each token fed to a
// session equal the full-sequence logits at that position, for every rope
// type, whether the tokens arrive one at a time or in chunks (one chunk
// longer than the 128-row attention block).
func TestSessionMatchesFullForward(t *testing.T) {
	onBackends(t, testSessionMatchesFullForward)
}

func testSessionMatchesFullForward(t *testing.T, be compute.Backend) {
	const T = 150
	for _, rc := range ropeConfigs {
		t.Run(rc.name, func(t *testing.T) {
			m := ropeModel(t, rc.name, rc.json)
			V := m.Cfg.Vocab
			r := rand.New(rand.NewPCG(3, 4))
			ids := make([]int32, T)
			for i := range ids {
				ids[i] = int32(r.IntN(V))
			}
			dm := newDM(t, m, be, DeviceOptions{Inference: true})
			full := deviceLogits(t, dm, &Batch{B: 1, T: T, IDs: ids})

			s := newSession(t, dm, T)
			for i := 0; i < 20; i++ {
				lg, err := s.Feed(ids[i : i+1])
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr32(lg, full[i*V:(i+1)*V]); e > 1e-5 {
					t.Fatalf("token %d fed alone: logits differ from the full forward by %.3g", i, e)
				}
			}
			for _, chunk := range [][2]int{{20, 27}, {27, 28}, {28, T}} {
				lg, err := s.Feed(ids[chunk[0]:chunk[1]])
				if err != nil {
					t.Fatal(err)
				}
				i := chunk[1] - 1
				if e := relErr32(lg, full[i*V:(i+1)*V]); e > 1e-5 {
					t.Fatalf("chunk %v: logits at %d differ from the full forward by %.3g", chunk, i, e)
				}
			}
			if s.Len() != T {
				t.Fatalf("session length %d, want %d", s.Len(), T)
			}
			if _, err := s.Feed(ids[:1]); err == nil {
				t.Fatal("feeding past the session's capacity succeeded")
			}
			s.Reset()
			lg, err := s.Feed(ids[:5])
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr32(lg, full[4*V:5*V]); e > 1e-5 {
				t.Fatalf("after Reset: logits differ by %.3g", e)
			}
		})
	}
}

// newSession is dm.NewSession, failing the test on an error and closing
// the session when the test ends.
func newSession(t testing.TB, dm *DeviceModel, maxLen int) *DeviceSession {
	t.Helper()
	s, err := dm.NewSession(maxLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// greedy decodes n tokens after prompt through s, always taking the most
// likely one.
func greedy(s *DeviceSession, prompt []int32, n int) ([]int32, error) {
	logits, err := s.Feed(prompt)
	if err != nil {
		return nil, err
	}
	var out []int32
	for len(out) < n {
		next := int32(Argmax(logits))
		if out = append(out, next); len(out) == n {
			break
		}
		if logits, err = s.Feed([]int32{next}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TestGreedyIsArgmaxOfFullForward: each greedy token is the argmax of the
// full forward over the prompt and the tokens generated before it.
func TestGreedyIsArgmaxOfFullForward(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := ropeModel(t, ropeConfigs[0].name, ropeConfigs[0].json)
		dm := newDM(t, m, be, DeviceOptions{Inference: true})
		prompt := []int32{5, 17, 3, 90, 42}
		out, err := greedy(newSession(t, dm, len(prompt)+12), prompt, 12)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 12 {
			t.Fatalf("greedy decoding returned %d tokens, want 12", len(out))
		}
		seq := append(append([]int32(nil), prompt...), out...)
		V := m.Cfg.Vocab
		lg := deviceLogits(t, dm, &Batch{B: 1, T: len(seq), IDs: seq})
		for i := range out {
			row := lg[(len(prompt)-1+i)*V : (len(prompt)+i)*V]
			best := Argmax(row)
			if int32(best) != out[i] && float64(row[best]-row[out[i]]) > 1e-4*math.Abs(float64(row[best])) {
				t.Fatalf("greedy token %d is %d, full forward's argmax is %d", i, out[i], best)
			}
		}
	})
}

// TestFeedRejectsBadTokens: ids outside the vocabulary are an error that
// names the id and the vocabulary size, never a panic or an out-of-range
// read; an empty feed is an error too.
func TestFeedRejectsBadTokens(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := ropeModel(t, ropeConfigs[1].name, ropeConfigs[1].json)
		s := newSession(t, newDM(t, m, be, DeviceOptions{Inference: true}), 8)
		for _, bad := range [][]int32{{97}, {1, -1}, {1 << 30}} {
			_, err := s.Feed(bad)
			if err == nil {
				t.Fatalf("Feed(%v) succeeded", bad)
			}
			want := fmt.Sprintf("[0, %d)", m.Cfg.Vocab)
			if !contains(err.Error(), want) || !contains(err.Error(), fmt.Sprint(bad[len(bad)-1])) {
				t.Errorf("Feed(%v) error %q does not name the id and %s", bad, err, want)
			}
			if s.Len() != 0 {
				t.Fatalf("a rejected Feed advanced the session to %d", s.Len())
			}
		}
		if _, err := s.Feed(nil); err == nil {
			t.Fatal("Feed(nil) succeeded")
		}
	})
}

// TestSessionLongRope: with longrope the frequencies depend on the whole
// sequence's length (long factors past original_max_position_embeddings),
// so after each feed the session's logits must equal a full forward over the
// tokens so far, including across the switch, where the cached keys are
// rotated again.
func TestSessionLongRope(t *testing.T) {
	onBackends(t, func(t *testing.T, be compute.Backend) {
		m := ropeModel(t, "longrope-phi3", `{"model_type":"phi3","vocab_size":97,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"partial_rotary_factor":0.5,
		"max_position_embeddings":64,"original_max_position_embeddings":16,"rope_parameters":{"rope_type":"longrope",
		"rope_theta":10000,"short_factor":[1.1,1.3],"long_factor":[2.5,7.5]}}`)
		V := m.Cfg.Vocab
		r := rand.New(rand.NewPCG(5, 6))
		ids := make([]int32, 40)
		for i := range ids {
			ids[i] = int32(r.IntN(V))
		}
		dm := newDM(t, m, be, DeviceOptions{Inference: true})
		s := newSession(t, dm, len(ids))
		for _, chunk := range [][2]int{{0, 10}, {10, 16}, {16, 17}, {17, 30}, {30, 40}} {
			lg, err := s.Feed(ids[chunk[0]:chunk[1]])
			if err != nil {
				t.Fatal(err)
			}
			lg = append([]float32(nil), lg...)
			n := chunk[1]
			// A fresh copy: the session's copy keeps its tables.
			full := logitsOn(t, m, be, &Batch{B: 1, T: n, IDs: ids[:n]})
			if e := relErr32(lg, full[(n-1)*V:n*V]); e > 1e-5 {
				t.Fatalf("after %d tokens: logits differ from the full forward by %.3g", n, e)
			}
		}
	})
}
