package export

import (
	"encoding/json"
	"fmt"
	"gotune/method"
	"gotune/safefile"
	"path/filepath"

	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/quant"
	"gotune/safetensors"
)

// MergedModel loads the base model in float32 and, when adapterDir is set,
// folds the adapter into its weights. It returns the model and the peft_type
// merged ("" without an adapter). LoRA, rsLoRA, DoRA and IA3 merge; prompt,
// prefix and bottleneck methods add computation that weights cannot hold and
// are refused. q, when set, first rounds every projection through the
// quantized format a QLoRA adapter was trained on (see the package
// documentation).
func MergedModel(baseDir, adapterDir string, q *quant.Options) (*model.Model, string, error) {
	m, err := model.Load(baseDir, model.LoadOptions{Storage: model.F32})
	if err != nil {
		return nil, "", err
	}
	if q != nil {
		if err := roundThroughQuant(m, *q); err != nil {
			return nil, "", err
		}
	}
	if adapterDir == "" {
		return m, "", nil
	}
	typ, err := peft.PeftType(adapterDir)
	if err != nil {
		return nil, "", err
	}
	meth, err := method.Load(m, adapterDir)
	if err != nil {
		return nil, "", err
	}
	mg, ok := meth.(peft.Merger)
	if !ok {
		meth.Detach()
		return nil, "", fmt.Errorf("%s: peft_type %s adds to the model rather than changing its weights, so it cannot be merged into them (LoRA and IA3 can); export it with --format peft", adapterDir, typ)
	}
	if err := mg.Merge(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", adapterDir, err)
	}
	return m, typ, nil
}

// roundThroughQuant replaces every projection weight by its quantized and
// dequantized value, the base a QLoRA adapter was trained against.
func roundThroughQuant(m *model.Model, q quant.Options) error {
	for _, l := range m.Linears() {
		w := l.F32()
		if w == nil {
			return fmt.Errorf("%s: not held in float32 (load the base in f32 to merge)", l.Name)
		}
		mat, err := q.Store(w)
		if err != nil {
			return fmt.Errorf("quantize %s: %w", l.Name, err)
		}
		mat.Dense(w.Data)
	}
	return nil
}

// writeHF writes the merged (or converted) model as a Hugging Face folder.
func writeHF(dir string, opt Options, res *Result) error {
	dtype := opt.DType
	if dtype == "" {
		var err error
		if dtype, err = configDType(opt.Model); err != nil {
			return err
		}
	}
	fmt.Fprintf(opt.Log, "loading %s\n", opt.Model)
	m, merged, err := MergedModel(opt.Model, opt.Adapter, opt.Quant)
	if err != nil {
		return err
	}
	res.Merged = merged
	if merged != "" {
		fmt.Fprintf(opt.Log, "merged %s adapter %s\n", merged, opt.Adapter)
	}
	return saveHF(dir, m, opt, dtype)
}

// saveHF writes weights, config and tokenizer files of m into dir.
func saveHF(dir string, m *model.Model, opt Options, dtype safetensors.DType) error {
	if err := checkFinite(m.Params()); err != nil {
		return err
	}
	if err := model.SaveWeights(dir, m.Params(), model.SaveOptions{DType: dtype, ShardBytes: opt.ShardBytes, Progress: opt.Progress}); err != nil {
		return fmt.Errorf("write weights: %w", err)
	}
	if err := model.CopyModelFiles(opt.Model, dir); err != nil {
		return fmt.Errorf("copy model files: %w", err)
	}
	if opt.Adapter != "" {
		// Training stores the tokenizer and chat template it used with the
		// adapter; they win over the base's.
		if err := model.CopyTokenizerFiles(opt.Adapter, dir); err != nil {
			return fmt.Errorf("copy tokenizer files: %w", err)
		}
	}
	return updateConfig(filepath.Join(dir, "config.json"), dtype)
}

func checkFinite(ps []*nn.Param) error {
	for _, p := range ps {
		for i, v := range p.Data {
			if v != v || v > 3.4e38 || v < -3.4e38 {
				return fmt.Errorf("merged weight %s holds a non-finite value at %d; the adapter is broken", p.Name, i)
			}
		}
	}
	return nil
}

var torchDTypes = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}

// configDType is the dtype a model folder's config.json declares (dtype, or
// torch_dtype in older files), float32 when it names none we write.
func configDType(dir string) (safetensors.DType, error) {
	path := filepath.Join(dir, "config.json")
	b, err := safefile.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c struct {
		DType      string `json:"dtype"`
		TorchDType string `json:"torch_dtype"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	name := c.DType
	if name == "" {
		name = c.TorchDType
	}
	for d, n := range torchDTypes {
		if n == name {
			return d, nil
		}
	}
	return safetensors.F32, nil
}

// updateConfig records the written dtype in config.json, keeping the key
// order, and drops quantization_config: the written weights are plain.
func updateConfig(path string, dtype safetensors.DType) error {
	b, err := safefile.ReadFile(path)
	if err != nil {
		return fmt.Errorf("export: the base model has no config.json: %w", err)
	}
	obj, err := parseOrdered(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	name, _ := json.Marshal(torchDTypes[dtype])
	found := false
	for _, key := range []string{"dtype", "torch_dtype"} {
		if obj.set(key, name) {
			found = true
		}
	}
	if !found {
		obj.add("torch_dtype", name)
	}
	obj.remove("quantization_config")
	out, err := obj.marshal()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeFileSync(path, out)
}
