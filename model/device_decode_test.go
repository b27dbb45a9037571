package model

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// longropeConfig is a Phi-3 shape whose rope switches to its long factors
// past 16 positions.
const longropeConfig = `{"model_type":"phi3","vocab_size":97,"hidden_size":48,"intermediate_size":80,
	"num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,"partial_rotary_factor":0.5,
	"max_position_embeddings":64,"original_max_position_embeddings":16,"rope_parameters":{"rope_type":"longrope",
	"rope_theta":10000,"short_factor":[1.1,1.3],"long_factor":[2.5,7.5]}}`

// ropeTables downloads the first n positions of dm's rotary tables (and the
// local ones, when the model has them).
func ropeTables(t *testing.T, dm *DeviceModel, n int) [][]float32 {
	t.Helper()
	var out [][]float32
	for _, x := range []compute.Tensor{dm.cos, dm.sin, dm.cosL, dm.sinL} {
		if x == nil {
			continue
		}
		w := x.Len() / dm.ropeN
		got := make([]float32, x.Len())
		if err := dm.be.Download(got, x); err != nil {
			t.Fatal(err)
		}
		out = append(out, got[:n*w])
	}
	return out
}

// TestRopeAheadHoldsExactTables: growing the rotary tables ahead of a
// decoding session leaves, at every position the pass uses, the very bits
// of the table the pass would have built for exactly its length, for every
// rope type (LongRoPE on both sides of its switch, dynamic NTK on both
// sides of max_position_embeddings), and the pass that follows rebuilds
// nothing. Decoding token by token to 600 positions rebuilds the tables a
// few times, not at every token past the first 256.
func TestRopeAheadHoldsExactTables(t *testing.T) {
	configs := append(ropeConfigs[:len(ropeConfigs):len(ropeConfigs)], struct{ name, json string }{"longrope-phi3", longropeConfig})
	const limit = 600
	for _, rc := range configs {
		t.Run(rc.name, func(t *testing.T) {
			m := ropeModel(t, rc.name, rc.json)
			ahead := newDM(t, m, cputest.Open(), DeviceOptions{Inference: true})
			builds := 0
			for need := 1; need <= limit; need++ {
				before := ahead.cos
				if err := ahead.ropeAhead(need, limit); err != nil {
					t.Fatal(err)
				}
				grown := ahead.cos
				if err := ahead.rope(need); err != nil { // what the forward pass asks
					t.Fatal(err)
				}
				if ahead.cos != before {
					builds++
				}
				if ahead.cos != grown && !(m.Cfg.Rope.Type == "dynamic" && need > m.Cfg.MaxPositions) {
					t.Fatalf("need %d: the pass rebuilt the tables grown ahead for it", need)
				}
				if need%97 != 0 && need != 16 && need != 17 && need != 256 && need != 257 && need != limit {
					continue
				}
				exact := newDM(t, m, cputest.Open(), DeviceOptions{Inference: true})
				if err := exact.rope(need); err != nil {
					t.Fatal(err)
				}
				got, want := ropeTables(t, ahead, need), ropeTables(t, exact, need)
				if len(got) != len(want) {
					t.Fatalf("need %d: %d tables, want %d", need, len(got), len(want))
				}
				for i := range want {
					for j := range want[i] {
						if math.Float32bits(got[i][j]) != math.Float32bits(want[i][j]) {
							t.Fatalf("need %d: table %d element %d is %v, the exact table's %v", need, i, j, got[i][j], want[i][j])
						}
					}
				}
			}
			most := 4 // doubling from 256 to 600 and LongRoPE's switch
			if m.Cfg.Rope.Type == "dynamic" {
				most = 4 + limit - m.Cfg.MaxPositions // exact tables past the context, by design
			}
			if builds > most {
				t.Errorf("%d table builds decoding to %d positions, want at most %d", builds, limit, most)
			}
		})
	}
}
