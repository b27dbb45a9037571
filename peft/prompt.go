package peft

import (
	"fmt"
	"gotune/hfconfig"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gotune/model"
	"gotune/nn"
	"gotune/safetensors"
)

// The prompt-learning methods (prompt tuning, P-tuning, prefix tuning) keep
// their trained values under PEFT's "prompt_encoder" module and save a single
// tensor, "prompt_embeddings": the virtual tokens (or key/value prefix) the
// model sees, which for an encoder is the encoder's output.
const (
	promptEmbeddingsKey = "prompt_embeddings"
	promptEncoderPrefix = "prompt_encoder." + adapterName + "."
	// encoderFile is gotune's own addition to a prompt-learning adapter
	// folder: the encoder weights PEFT does not save (in-memory names), so
	// that training can resume. PEFT ignores the file.
	encoderFile = "prompt_encoder.safetensors"
)

// SavedTensorer is implemented by methods whose saved tensors are not simply
// their parameters under SavedName: the prompt-learning methods save their
// encoder's output, IA3 saves "ia3_l" without the adapter name.
type SavedTensorer interface {
	// SavedTensors returns what adapter_model.safetensors holds, by key.
	SavedTensors() map[string][]float32
}

// Encoded is implemented by methods that train an encoder whose output is
// what PEFT saves (P-tuning, projected prefix tuning). A method loaded from a
// PEFT folder alone has no encoder weights (PEFT does not save them): it then
// trains the saved output directly, as PEFT's inference mode holds it.
type Encoded interface {
	HasEncoder() bool
	// EncoderTrainableCount counts the values trained with the encoder in
	// place, as PEFT builds it for training.
	EncoderTrainableCount() int
	// OutputLayer is the in-memory name of the encoder's last linear layer
	// (e.g. "prompt_encoder.default.mlp_head.4"): its bias gradient is the
	// output gradient summed over virtual tokens.
	OutputLayer() string
	// Output returns the encoder output [Virtual, width] as the host
	// computes it (what is saved).
	Output() []float32
}

// readPromptConfig reads a prompt-learning adapter's adapter_config.json
// and checks what all three methods (want is the peft_type) require.
func readPromptConfig(dir, want string) (*hfconfig.AdapterConfig, string, error) {
	f, err := hfconfig.ReadAdapterConfig(dir)
	if err != nil {
		return nil, "", err
	}
	path := f.Path
	if f.PeftType != want {
		return nil, path, fmt.Errorf("%s: peft_type %q, want %s", path, f.PeftType, want)
	}
	if f.TaskType != "" && f.TaskType != "CAUSAL_LM" {
		return nil, path, fmt.Errorf("%s: task_type %q: only CAUSAL_LM is supported", path, f.TaskType)
	}
	if f.NumTransformerSubmodules > 1 {
		return nil, path, fmt.Errorf("%s: num_transformer_submodules %d is for encoder-decoder models, want 1", path, f.NumTransformerSubmodules)
	}
	if f.NumVirtualTokens <= 0 {
		return nil, path, fmt.Errorf("%s: num_virtual_tokens must be a positive integer, got %d", path, f.NumVirtualTokens)
	}
	if len(f.ModulesToSave) > 0 {
		return nil, path, fmt.Errorf("%s: modules_to_save %v is not supported yet", path, f.ModulesToSave)
	}
	return f, path, nil
}

// checkDims verifies that a saved config was made for this model.
func checkDims(f *hfconfig.AdapterConfig, path string, m *model.Model, tokenDim, heads int) error {
	if f.TokenDim != 0 && f.TokenDim != tokenDim {
		return fmt.Errorf("%s: token_dim %d, this model needs %d (is it the right base model?)", path, f.TokenDim, tokenDim)
	}
	if f.NumLayers != 0 && f.NumLayers != len(m.Layers) {
		return fmt.Errorf("%s: num_layers %d, this model has %d", path, f.NumLayers, len(m.Layers))
	}
	if f.NumAttentionHeads != 0 && f.NumAttentionHeads != heads {
		return fmt.Errorf("%s: num_attention_heads %d, this model needs %d", path, f.NumAttentionHeads, heads)
	}
	return nil
}

// promptJSON is the part of adapter_config.json every prompt-learning method
// writes; token_dim and num_attention_heads depend on the method.
func promptJSON(typ, base string, m *model.Model, virtual, tokenDim, heads int) map[string]any {
	return map[string]any{
		"auto_mapping": nil, "base_model_name_or_path": base, "inference_mode": true, "modules_to_save": nil,
		"num_attention_heads": heads, "num_layers": len(m.Layers), "num_transformer_submodules": 1,
		"num_virtual_tokens": virtual, "peft_type": typ, "revision": nil, "task_type": "CAUSAL_LM", "token_dim": tokenDim,
	}
}

// readPromptEmbeddings reads the saved "prompt_embeddings" [rows, cols].
func readPromptEmbeddings(dir string, rows, cols int) ([]float32, error) {
	path := filepath.Join(dir, "adapter_model.safetensors")
	st, err := safetensors.OpenOne(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v, info, err := st.Float32s(promptEmbeddingsKey)
	if err != nil {
		return nil, fmt.Errorf("%s: missing tensor %q", path, promptEmbeddingsKey)
	}
	if !slices.Equal(info.Shape, []int{rows, cols}) {
		return nil, fmt.Errorf("%s: %s has shape %v, adapter_config.json and the model imply [%d %d]", path, promptEmbeddingsKey, info.Shape, rows, cols)
	}
	for _, n := range st.Names() {
		if n != promptEmbeddingsKey {
			return nil, fmt.Errorf("%s: unexpected tensor %q (a prompt-learning adapter holds only %s)", path, n, promptEmbeddingsKey)
		}
	}
	return v, nil
}

// savePrompt writes adapter_model.safetensors (and the encoder file when
// there are encoder weights) and adapter_config.json.
func savePrompt(dir string, emb []float32, shape []int, encoder []*nn.Param, cfg map[string]any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := []safetensors.Tensor{safetensors.F32Tensor(promptEmbeddingsKey, shape, emb)}
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	encPath := filepath.Join(dir, encoderFile)
	if len(encoder) > 0 {
		var es []safetensors.Tensor
		for _, p := range encoder {
			es = append(es, safetensors.F32Tensor(p.Name, p.Shape, p.Data))
		}
		if err := safetensors.Write(encPath, es, map[string]string{"format": "pt", "gotune": "prompt encoder weights; PEFT saves only their output"}); err != nil {
			return err
		}
	} else if err := os.Remove(encPath); err != nil && !os.IsNotExist(err) {
		return err
	}
	return writeJSON(filepath.Join(dir, "adapter_config.json"), cfg)
}

// loadEncoder fills params from gotune's encoder file when the folder has
// one; it reports whether it did.
func loadEncoder(dir string, params []*nn.Param) (bool, error) {
	path := filepath.Join(dir, encoderFile)
	if _, err := os.Stat(path); err != nil {
		return false, nil
	}
	st, err := safetensors.OpenOne(path)
	if err != nil {
		return false, err
	}
	defer st.Close()
	return true, loadParams(st, path, params)
}

// sameOutput checks that an encoder loaded from gotune's file reproduces the
// prompt_embeddings saved beside it, so a stale file is not trusted.
func sameOutput(dir string, got, saved []float32) error {
	var num, den float64
	for i, v := range saved {
		d := float64(got[i]) - float64(v)
		num += d * d
		den += float64(v) * float64(v)
	}
	if num > 1e-8*max(den, 1e-30) {
		return fmt.Errorf("%s: %s does not reproduce adapter_model.safetensors' %s (relative error %.3g); remove it to load the saved output alone",
			dir, encoderFile, promptEmbeddingsKey, math.Sqrt(num/max(den, 1e-30)))
	}
	return nil
}

// PromptTuningConfig configures prompt tuning (PEFT's PromptTuningConfig).
type PromptTuningConfig struct {
	Virtual int // num_virtual_tokens
	// Init is "RANDOM" (standard normal, as torch's nn.Embedding), "TEXT"
	// (the embeddings of InitText's tokens, repeated or cut to Virtual) or
	// "SAMPLE_VOCAB" (embeddings of tokens drawn uniformly).
	Init     string
	InitText string
	// Tokenize turns InitText into token ids for TEXT init. PEFT calls the
	// tokenizer with its defaults, so special tokens (a BOS) are included.
	Tokenize func(string) []int
	// TokenizerName is recorded as tokenizer_name_or_path.
	TokenizerName string
	BaseModel     string
}

// PromptTuning prepends trained virtual-token embeddings to every sequence.
type PromptTuning struct {
	Config    PromptTuningConfig
	Embedding *nn.Param // prompt_encoder.default.embedding.weight [Virtual, Hidden]
	m         *model.Model
}

// AttachPromptTuning adds prompt tuning to m.
func AttachPromptTuning(m *model.Model, cfg PromptTuningConfig, seed uint64) (*PromptTuning, error) {
	if cfg.Virtual <= 0 {
		return nil, fmt.Errorf("prompt tuning: num_virtual_tokens must be positive, got %d", cfg.Virtual)
	}
	if m.Input != nil {
		return nil, fmt.Errorf("prompt tuning: the model already has virtual tokens attached")
	}
	h := m.Cfg.Hidden
	p := &PromptTuning{Config: cfg, m: m, Embedding: nn.NewParam(promptEncoderPrefix+"embedding.weight", cfg.Virtual, h)}
	switch strings.ToUpper(cfg.Init) {
	case "", "RANDOM":
		p.Config.Init = "RANDOM"
		rng := rand.New(rand.NewPCG(seed, 0x70726f6d))
		for i := range p.Embedding.Data {
			p.Embedding.Data[i] = float32(rng.NormFloat64())
		}
	case "TEXT":
		p.Config.Init = "TEXT"
		if cfg.Tokenize == nil {
			return nil, fmt.Errorf("prompt tuning: TEXT init needs a tokenizer")
		}
		ids := cfg.Tokenize(cfg.InitText)
		if len(ids) == 0 {
			return nil, fmt.Errorf("prompt tuning: prompt_tuning_init_text %q has no tokens", cfg.InitText)
		}
		for v := 0; v < cfg.Virtual; v++ {
			id := ids[v%len(ids)]
			if id < 0 || id >= m.Cfg.Vocab {
				return nil, fmt.Errorf("prompt tuning: init text token %d is outside the vocabulary [0, %d)", id, m.Cfg.Vocab)
			}
			copy(p.Embedding.Data[v*h:(v+1)*h], m.Embed.Data[id*h:(id+1)*h])
		}
	case "SAMPLE_VOCAB":
		// PEFT's SAMPLE_VOCAB: embeddings of tokens drawn uniformly.
		p.Config.Init = "SAMPLE_VOCAB"
		rng := rand.New(rand.NewPCG(seed, 0x766f6361))
		for v := 0; v < cfg.Virtual; v++ {
			id := rng.IntN(m.Cfg.Vocab)
			copy(p.Embedding.Data[v*h:(v+1)*h], m.Embed.Data[id*h:(id+1)*h])
		}
	case "ZERO":
		// for loading
	default:
		return nil, fmt.Errorf("prompt tuning: prompt_tuning_init %q (RANDOM, TEXT or SAMPLE_VOCAB)", cfg.Init)
	}
	p.Embedding.SetTrainable(true)
	m.Input = p
	return p, nil
}

// LoadPromptTuning attaches the prompt-tuning adapter saved in dir.
func LoadPromptTuning(m *model.Model, dir string) (*PromptTuning, error) {
	f, path, err := readPromptConfig(dir, "PROMPT_TUNING")
	if err != nil {
		return nil, err
	}
	if err := checkDims(f, path, m, m.Cfg.Hidden, m.Cfg.Heads); err != nil {
		return nil, err
	}
	cfg := PromptTuningConfig{Virtual: f.NumVirtualTokens, Init: "ZERO", BaseModel: f.BaseModel}
	emb, err := readPromptEmbeddings(dir, f.NumVirtualTokens, m.Cfg.Hidden)
	if err != nil {
		return nil, err
	}
	p, err := AttachPromptTuning(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Config.Init = strings.ToUpper(f.PromptTuningInit)
	if f.PromptTuningInitText != nil {
		p.Config.InitText = *f.PromptTuningInitText
	}
	if f.TokenizerName != nil {
		p.Config.TokenizerName = *f.TokenizerName
	}
	copy(p.Embedding.Data, emb)
	return p, nil
}

// Virtual implements model.InputHook.
func (p *PromptTuning) Virtual() int { return p.Config.Virtual }

// Type implements Method.
func (p *PromptTuning) Type() string { return "PROMPT_TUNING" }

// Params implements Method.
func (p *PromptTuning) Params() []*nn.Param { return []*nn.Param{p.Embedding} }

// SavedTensors implements SavedTensorer.
func (p *PromptTuning) SavedTensors() map[string][]float32 {
	return map[string][]float32{promptEmbeddingsKey: p.Embedding.Data}
}

// Detach implements Method.
func (p *PromptTuning) Detach() {
	if p.m != nil && p.m.Input == model.InputHook(p) {
		p.m.Input = nil
	}
}

// Save implements Method.
func (p *PromptTuning) Save(dir string) error {
	cfg := promptJSON("PROMPT_TUNING", p.Config.BaseModel, p.m, p.Config.Virtual, p.m.Cfg.Hidden, p.m.Cfg.Heads)
	init := p.Config.Init
	if init == "" || init == "ZERO" {
		init = "RANDOM"
	}
	cfg["prompt_tuning_init"] = init
	cfg["prompt_tuning_init_text"] = nilIfBlank(p.Config.InitText)
	cfg["tokenizer_name_or_path"] = nilIfBlank(p.Config.TokenizerName)
	cfg["tokenizer_kwargs"] = nil
	return savePrompt(dir, p.Embedding.Data, p.Embedding.Shape, nil, cfg)
}

func nilIfBlank(s string) any {
	if s == "" {
		return nil
	}
	return s
}
