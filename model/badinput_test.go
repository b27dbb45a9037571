package model

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotune/nn"
	"gotune/quant"
	"gotune/safetensors"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

const tinyConfigJSON = `{"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":24,
	"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,
	"rms_norm_eps":1e-5,"rope_theta":10000,"tie_word_embeddings":false}`

// tinyTensors returns every tensor a model of tinyConfigJSON needs, with
// random values.
func tinyTensors(t *testing.T) []safetensors.Tensor {
	t.Helper()
	cfg, err := ParseConfig("config.json", []byte(tinyConfigJSON))
	if err != nil {
		t.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(4)
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, p.Data))
	}
	return ts
}

// modelDir writes config.json and model.safetensors into a fresh folder.
func modelDir(t *testing.T, config string, tensors []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if tensors != nil {
		if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// load calls Load and turns a panic into a test failure.
func load(t *testing.T, dir string) (m *Model, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Load panicked: %v", r)
		}
	}()
	return Load(dir, LoadOptions{})
}

func replaceKey(js, key, value string) string {
	i := strings.Index(js, `"`+key+`":`)
	if i < 0 {
		panic("no key " + key)
	}
	j := i + len(key) + 3
	k := strings.IndexAny(js[j:], ",}")
	return js[:j] + value + js[j+k:]
}

func dropKey(js, key string) string {
	i := strings.Index(js, `"`+key+`":`)
	k := strings.IndexAny(js[i:], ",}")
	if js[i+k] == ',' {
		k++
	}
	return js[:i] + js[i+k:]
}

func TestLoadGoodFolder(t *testing.T) {
	ts := tinyTensors(t)
	dir := modelDir(t, tinyConfigJSON, ts)
	m, err := load(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tensor := range ts {
		var p []float32
		for _, q := range m.Params() {
			if q.Name == tensor.Name {
				p = q.Data
			}
		}
		want := safetensors.EncodeF32(p)
		if string(want) != string(tensor.Data) {
			t.Fatalf("tensor %s not loaded as written", tensor.Name)
		}
	}
	// bf16 storage loads the same folder.
	if _, err := Load(dir, LoadOptions{Storage: BF16}); err != nil {
		t.Fatal(err)
	}
}

// TestLoadBadFolder: each broken model folder gives a one-line error that
// names the file, the key or tensor at fault and what was expected.
func TestLoadBadFolder(t *testing.T) {
	good := tinyTensors(t)
	const q0 = "model.layers.0.self_attn.q_proj.weight"
	without := func(name string) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, ts := range good {
			if ts.Name != name {
				out = append(out, ts)
			}
		}
		return out
	}
	with := func(name string, shape []int) []safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return append(without(name), safetensors.F32Tensor(name, shape, make([]float32, n)))
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) string // returns the folder
		want  []string                  // substrings of the error
	}{
		{"truncated safetensors", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, good)
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-100); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"model.safetensors", "truncated"}},
		{"safetensors shorter than its header", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, good)
			if err := os.Truncate(filepath.Join(dir, "model.safetensors"), 40); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"model.safetensors", "header length", "truncated"}},
		{"safetensors of 5 bytes", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, nil)
			os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("hello"), 0o644)
			return dir
		}, []string{"model.safetensors", "too short"}},
		{"corrupt header", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, good)
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			copy(b[8:], "{not json")
			os.WriteFile(p, b, 0o644)
			return dir
		}, []string{"model.safetensors", "header", "JSON"}},
		{"header length past the end", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, good)
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(b, 1<<40)
			os.WriteFile(p, b, 0o644)
			return dir
		}, []string{"model.safetensors", "header length"}},
		{"unsupported model_type", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "model_type", `"gpt2"`), good)
		}, []string{"config.json", "model_type", "gpt2", "llama"}},
		{"missing model_type", func(t *testing.T) string {
			return modelDir(t, dropKey(tinyConfigJSON, "model_type"), good)
		}, []string{"config.json", "model_type"}},
		{"unsupported rope type", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "rope_theta", `10000,"rope_scaling":{"rope_type":"sigmoid","factor":2}`), good)
		}, []string{"config.json", "rope_scaling", "sigmoid", "yarn", "longrope"}},
		{"longrope without factors", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "rope_theta", `10000,"rope_scaling":{"rope_type":"longrope","short_factor":[1]}`), good)
		}, []string{"config.json", "rope_scaling", "longrope", "short_factor", "rotary dimensions"}},
		{"llama3 rope without low_freq_factor", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "rope_theta", `10000,"rope_scaling":{"rope_type":"llama3","factor":8,"high_freq_factor":4,"original_max_position_embeddings":32}`), good)
		}, []string{"config.json", "llama3", "low_freq_factor"}},
		{"missing hidden_size", func(t *testing.T) string {
			return modelDir(t, dropKey(tinyConfigJSON, "hidden_size"), good)
		}, []string{"config.json", "hidden_size", "missing"}},
		{"missing num_hidden_layers", func(t *testing.T) string {
			return modelDir(t, dropKey(tinyConfigJSON, "num_hidden_layers"), good)
		}, []string{"config.json", "num_hidden_layers", "missing"}},
		{"zero vocab_size", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "vocab_size", "0"), good)
		}, []string{"config.json", "vocab_size", "positive"}},
		{"heads not a multiple of kv heads", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "num_key_value_heads", "3"), good)
		}, []string{"config.json", "num_attention_heads 4", "num_key_value_heads 3", "multiple"}},
		{"odd head_dim", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "num_attention_heads", `4,"head_dim":5`), good)
		}, []string{"config.json", "head_dim 5", "even"}},
		{"unsupported activation", func(t *testing.T) string {
			return modelDir(t, replaceKey(tinyConfigJSON, "rms_norm_eps", `1e-5,"hidden_act":"gelu"`), good)
		}, []string{"config.json", "hidden_act", "gelu"}},
		{"config.json not JSON", func(t *testing.T) string {
			return modelDir(t, `{"model_type": "llama",`, good)
		}, []string{"config.json"}},
		{"no config.json", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, good)
			os.Remove(filepath.Join(dir, "config.json"))
			return dir
		}, []string{"config.json"}},
		{"q_proj with the wrong rows", func(t *testing.T) string {
			return modelDir(t, tinyConfigJSON, with(q0, []int{12, 16}))
		}, []string{"model.safetensors", q0, "[12 16]", "[16 16]"}},
		{"q_proj with the wrong rank", func(t *testing.T) string {
			return modelDir(t, tinyConfigJSON, with(q0, []int{256}))
		}, []string{"model.safetensors", q0, "[256]", "[16 16]"}},
		{"missing tensor", func(t *testing.T) string {
			return modelDir(t, tinyConfigJSON, without("model.layers.1.mlp.down_proj.weight"))
		}, []string{"model.layers.1.mlp.down_proj.weight", "missing", "[16 24]"}},
		{"missing lm_head of an untied model", func(t *testing.T) string {
			return modelDir(t, tinyConfigJSON, without("lm_head.weight"))
		}, []string{"lm_head.weight", "missing"}},
		{"integer weights", func(t *testing.T) string {
			ts := without(q0)
			ts = append(ts, safetensors.Tensor{Name: q0, DType: safetensors.DType("I64"), Shape: []int{16, 16},
				Data: safetensors.EncodeI64(make([]int64, 256))})
			return modelDir(t, tinyConfigJSON, ts)
		}, []string{"model.safetensors", "I64"}},
		{"pickle-only folder", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, nil)
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("PK\x03\x04 pickle"), 0o644)
			return dir
		}, []string{"pytorch_model.bin", "pickle", "safetensors"}},
		{"no weights at all", func(t *testing.T) string {
			return modelDir(t, tinyConfigJSON, nil)
		}, []string{"safetensors"}},
		{"index naming a missing shard", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, nil)
			os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"),
				[]byte(`{"weight_map":{"model.embed_tokens.weight":"model-00001-of-00002.safetensors"}}`), 0o644)
			return dir
		}, []string{"model-00001-of-00002.safetensors"}},
		{"index escaping the folder", func(t *testing.T) string {
			dir := modelDir(t, tinyConfigJSON, nil)
			os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"),
				[]byte(`{"weight_map":{"model.embed_tokens.weight":"../evil.safetensors"}}`), 0o644)
			return dir
		}, []string{"model.safetensors.index.json", "../evil.safetensors"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.setup(t)
			m, err := load(t, dir)
			if err == nil {
				t.Fatalf("Load succeeded (%d layers); want an error", len(m.Layers))
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestBatchValidate(t *testing.T) {
	const V = 32
	ok := func() *Batch {
		return &Batch{B: 2, T: 3, IDs: []int32{1, 2, 3, 4, 5, 31}, Labels: []int32{IgnoreIndex, 2, 3, 4, 5, IgnoreIndex},
			Mask: []int32{1, 1, 1, 1, 1, 0}}
	}
	if err := ok().Validate(V); err != nil {
		t.Fatalf("valid batch rejected: %v", err)
	}
	cases := []struct {
		name   string
		modify func(b *Batch)
		want   []string
	}{
		{"id past the vocabulary", func(b *Batch) { b.IDs[4] = V }, []string{"input_ids[1][1]", "32", "[0, 32)"}},
		{"negative id", func(b *Batch) { b.IDs[0] = -5 }, []string{"input_ids[0][0]", "-5"}},
		{"label past the vocabulary", func(b *Batch) { b.Labels[2] = 1000 }, []string{"labels[0][2]", "1000"}},
		{"negative label other than -100", func(b *Batch) { b.Labels[1] = -1 }, []string{"labels[0][1]", "-1"}},
		{"short mask", func(b *Batch) { b.Mask = b.Mask[:5] }, []string{"attention_mask", "5", "6"}},
		{"short labels", func(b *Batch) { b.Labels = b.Labels[:2] }, []string{"labels", "2", "6"}},
		{"no ids", func(b *Batch) { b.IDs = nil }, []string{"input_ids"}},
		// A negative position id indexes the rope table out of range: the
		// forward pass panics on a batch Validate accepted.
		{"negative position id", func(b *Batch) { b.Pos = []int32{0, -1, 2, 0, 1, 2} }, []string{"position_ids[0][1]", "-1"}},
		{"empty", func(b *Batch) { b.B = 0 }, []string{"empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := ok()
			c.modify(b)
			err := b.Validate(V)
			if err == nil {
				t.Fatal("Validate accepted the batch")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestAbsurdConfigSizes: sizes no model has, or sizes the weight files do
// not back, are refused before the model is allocated. Before, vocab_size
// 2^40 or a billion layers allocated until the machine ran out of memory.
func TestAbsurdConfigSizes(t *testing.T) {
	ts := tinyTensors(t)
	set := func(key, val string) string {
		i := strings.Index(tinyConfigJSON, `"`+key+`":`)
		j := i + strings.IndexAny(tinyConfigJSON[i:], ",}")
		return tinyConfigJSON[:i] + `"` + key + `":` + val + tinyConfigJSON[j:]
	}
	cases := []struct{ config, want string }{
		{set("hidden_size", "1099511627776"), "hidden_size"},
		{set("vocab_size", "1099511627776"), "vocab_size"},
		{set("num_hidden_layers", "1000000000"), "num_hidden_layers"},
		{set("intermediate_size", "1099511627776"), "intermediate_size"},
		{set("num_attention_heads", "1073741824"), "num_attention_heads"},
		// plausible sizes that the weights do not have
		{set("vocab_size", "4000000"), "model.embed_tokens.weight"},
		{set("num_hidden_layers", "4000"), "model.layers.3999"},
		{set("num_hidden_layers", "1"), "model.layers.1"},
		{set("intermediate_size", "100000"), "gate_proj"},
	}
	for _, c := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := load(t, modelDir(t, c.config, ts))
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s", c.want, err, c.want)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 64<<20 {
			t.Errorf("%s: allocated %d MB before failing", c.want, a>>20)
		}
	}
	if _, err := load(t, modelDir(t, tinyConfigJSON, ts)); err != nil {
		t.Errorf("the matching config: %v", err)
	}
}

func TestCheckMemory(t *testing.T) {
	cfg, err := ParseConfig("config.json", []byte(tinyConfigJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkMemory(cfg, LoadOptions{}, "tiny"); err != nil {
		t.Errorf("tiny model: %v", err)
	}
	big := *cfg
	big.Vocab, big.Hidden, big.Layers = maxVocab, maxHidden, maxLayers
	if physicalMemory() > 0 {
		if err := checkMemory(&big, LoadOptions{}, "big"); err == nil || !strings.Contains(err.Error(), "GiB") {
			t.Errorf("a model larger than memory: %v", err)
		}
	}
}

// TestFIFOInModelFolder: a named pipe in place of model.safetensors or
// config.json made every command wait forever for a writer.
func TestFIFOInModelFolder(t *testing.T) {
	for _, name := range []string{"model.safetensors", "config.json"} {
		dir := modelDir(t, tinyConfigJSON, tinyTensors(t))
		p := filepath.Join(dir, name)
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := Load(dir, LoadOptions{})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), name) {
				t.Errorf("%s as a FIFO: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			// unblock the reader so the test binary can exit
			if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
				f.Close()
			}
			t.Fatalf("%s as a FIFO: Load still blocked after 30 s", name)
		}
	}
}

// TestFamilyConfigErrors: bad keys of the newer families are refused with
// the file and the key named.
func TestFamilyConfigErrors(t *testing.T) {
	moe := `{"model_type":"mixtral","vocab_size":32,"hidden_size":16,"intermediate_size":8,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,%s}`
	gemma := `{"model_type":"gemma2","vocab_size":32,"hidden_size":16,"intermediate_size":8,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"head_dim":4,"max_position_embeddings":64,%s}`
	phi := `{"model_type":"phi3","vocab_size":32,"hidden_size":16,"intermediate_size":8,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,%s}`
	for _, c := range []struct {
		name, json string
		want       []string
	}{
		{"no experts", fmt.Sprintf(moe, `"num_experts_per_tok":2`), []string{"num_local_experts"}},
		{"top-k above experts", fmt.Sprintf(moe, `"num_local_experts":2,"num_experts_per_tok":3`), []string{"num_experts_per_tok"}},
		{"jitter", fmt.Sprintf(moe, `"num_local_experts":4,"num_experts_per_tok":2,"router_jitter_noise":0.1`), []string{"router_jitter_noise"}},
		{"negative aux", fmt.Sprintf(moe, `"num_local_experts":4,"num_experts_per_tok":2,"output_router_logits":true,"router_aux_loss_coef":-1`), []string{"router_aux_loss_coef"}},
		{"layer_types length", fmt.Sprintf(gemma, `"layer_types":["sliding_attention"],"sliding_window":4`), []string{"layer_types", "num_hidden_layers"}},
		{"layer type", fmt.Sprintf(gemma, `"layer_types":["sliding_attention","chunked_attention"],"sliding_window":4`), []string{"layer_types[1]", "chunked_attention"}},
		{"negative soft cap", fmt.Sprintf(gemma, `"attn_logit_softcapping":-2`), []string{"attn_logit_softcapping"}},
		{"activation", fmt.Sprintf(gemma, `"hidden_activation":"relu"`), []string{"hidden_act", "relu"}},
		{"longrope factors", fmt.Sprintf(phi, `"rope_scaling":{"type":"longrope","short_factor":[1,1,1],"long_factor":[1,1]}`), []string{"short_factor", "rotary dimensions"}},
		{"longrope factor value", fmt.Sprintf(phi, `"rope_scaling":{"type":"su","short_factor":[1,0],"long_factor":[1,1]}`), []string{"short_factor[1]"}},
		{"phi3 bias", fmt.Sprintf(phi, `"attention_bias":true`), []string{"attention_bias"}},
	} {
		_, err := ParseConfig("dir/config.json", []byte(c.json))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range append(c.want, "dir/config.json") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

// TestLoadStorageForms: every storage a load can ask for holds, layer by
// layer, what converting the float32 load gives (the zero quantized type
// is float32), and no two layers share a weight.
func TestLoadStorageForms(t *testing.T) {
	dir := modelDir(t, tinyConfigJSON, tinyTensors(t))
	base, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		opt  LoadOptions
		form quant.Options
	}{
		{"f32", LoadOptions{Storage: F32}, quant.Options{Type: quant.F32}},
		{"zero-quant", LoadOptions{Quant: &quant.Options{}}, quant.Options{Type: quant.F32}},
		{"bf16", LoadOptions{Storage: BF16}, quant.Options{Type: quant.BF16}},
		{"nf4", LoadOptions{Quant: &quant.Options{Type: quant.NF4, BlockSize: 16}}, quant.Options{Type: quant.NF4, BlockSize: 16}},
		{"int8", LoadOptions{Quant: &quant.Options{Type: quant.Int8Row}}, quant.Options{Type: quant.Int8Row}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(dir, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[nn.Weight]string{}
			for i, l := range m.Linears() {
				if other, ok := seen[l.W]; ok {
					t.Fatalf("%s shares its weight with %s", l.Name, other)
				}
				seen[l.W] = l.Name
				want, err := c.form.Store(&nn.Param{Shape: []int{l.Out, l.In}, Data: base.Linears()[i].DenseWeight()})
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprintf("%T", l.W) != fmt.Sprintf("%T", want) {
					t.Fatalf("%s held as %T, want %T", l.Name, l.W, want)
				}
				got, exp := l.DenseWeight(), make([]float32, l.Out*l.In)
				want.Dense(exp)
				for j := range exp {
					if got[j] != exp[j] {
						t.Fatalf("%s[%d] = %v, want %v", l.Name, j, got[j], exp[j])
					}
				}
			}
		})
	}
}
