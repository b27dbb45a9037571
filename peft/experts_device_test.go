package peft

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/model"
)

// TestExpertLoRAOnDevice: LoRA on the stacked expert weights (gate_up_proj
// split between the gate and up layers, down_proj) trains on the device
// block with the same loss and gradients of A and B (whose expert parts are
// strided columns of B) on the CPU backend as on the reference backend.
func TestExpertLoRAOnDevice(t *testing.T) {
	for _, js := range []string{
		`{"model_type":"qwen3_moe","vocab_size":97,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"num_experts":4,"num_experts_per_tok":2,
			"moe_intermediate_size":12,"max_position_embeddings":64,"tie_word_embeddings":true,"output_router_logits":true}`,
		`{"model_type":"mixtral","vocab_size":97,"hidden_size":32,"intermediate_size":12,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":3,"num_experts_per_tok":2,
			"max_position_embeddings":64}`,
	} {
		cfg, err := model.ParseConfig("config.json", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(cfg.ModelType, func(t *testing.T) {
			m := model.New(cfg)
			m.RandomInit(7)
			set, err := AttachLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"},
				TargetParameters: []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}}, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range set.Params() { // B starts at zero: give A a gradient
				for i := range p.Data {
					p.Data[i] += float32(math.Sin(float64(i)+1)) * 0.2
				}
			}
			const T = 10
			b := &model.Batch{B: 2, T: T, IDs: make([]int32, 2*T), Labels: make([]int32, 2*T)}
			for i := range b.IDs {
				b.IDs[i] = int32((i*29 + 3) % cfg.Vocab)
				b.Labels[i] = b.IDs[i]
			}
			scale := float32(1 / float64(b.TrainedTokens()))
			csum, _ := newRun(t, m).Step(b, scale)
			dm, err := model.NewDeviceModel(m, ref.New(), model.DeviceOptions{Compute: compute.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			gsum, _, err := dm.Step(b, scale)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(gsum-csum) / math.Abs(csum); e > 1e-5 {
				t.Errorf("loss %.8g on ref, %.8g on the CPU backend", gsum, csum)
			}
			experts := 0
			for _, el := range set.Experts {
				experts += len(el.Params())
			}
			if experts != 8 {
				t.Fatalf("%d stacked expert matrices, want 8 (A and B of two weights in two layers)", experts)
			}
			for _, p := range set.Params() {
				g, err := dm.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				if e := relDiff(g, p.Grad); e > 1e-4 {
					t.Errorf("%s: gradient on ref differs from the CPU backend's by %.3g", p.Name, e)
				}
			}
		})
	}
}
