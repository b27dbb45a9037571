package model

import (
	"strings"
	"testing"

	"gotune/compute/cpu/cputest"
)

// seedOSSConfig is a small Seed-OSS: q/k/v biases by default, none on o.
const seedOSSConfig = `{"model_type":"seed_oss","vocab_size":97,"hidden_size":48,"intermediate_size":80,"num_hidden_layers":2,
	"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"max_position_embeddings":256,"rope_theta":10000,
	"attention_out_bias":false,"mlp_bias":false}`

// TestSeedOSS: the family reads its bias keys, refuses MLP biases it cannot
// load, and its block on the CPU backend trains and decodes as the
// reference backend computes it.
func TestSeedOSS(t *testing.T) {
	cfg, err := ParseConfig("seed_oss/config.json", []byte(seedOSSConfig))
	if err != nil {
		t.Fatal(err)
	}
	m := New(cfg)
	l := m.Layers[0]
	if l.Q.B == nil || l.K.B == nil || l.V.B == nil || l.O.B != nil {
		t.Errorf("biases q %v k %v v %v o %v: want q, k and v only", l.Q.B != nil, l.K.B != nil, l.V.B != nil, l.O.B != nil)
	}
	bad := strings.Replace(seedOSSConfig, `"mlp_bias":false`, `"mlp_bias":true`, 1)
	if _, err := ParseConfig("seed_oss/config.json", []byte(bad)); err == nil || !strings.Contains(err.Error(), "mlp_bias") {
		t.Errorf("mlp_bias true: got %v, want an error naming the key", err)
	}
	familyConfigs["seed_oss"] = seedOSSConfig
	t.Cleanup(func() { delete(familyConfigs, "seed_oss") })
	testDeviceStep(t, cputest.Open(), []string{"seed_oss"})
	testDeviceSession(t, cputest.Open(), []string{"seed_oss"}, []int32{3, 41, 59})
}
