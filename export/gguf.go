package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"gotune/hfconfig"
	"gotune/safefile"
	"os"
	"path/filepath"
	"strings"

	"gotune/gguf"
	"gotune/model/family"
	"gotune/peft"
	"gotune/safetensors"
)

// File names inside a GGUF export folder.
const (
	ModelGGUF     = "model.gguf"
	AdapterGGUF   = "adapter.gguf"
	ModelfileName = "Modelfile"
)

// writeGGUF writes model.gguf (merged, or the base with adapter.gguf) and
// optionally a Modelfile, and checks them against llama.cpp's loading rules.
func writeGGUF(dir string, opt Options, res *Result) error {
	name := opt.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(opt.Out))
	}
	src := opt.Model
	if opt.Adapter != "" && !opt.GGUFAdapter {
		// Merge into a float32 Hugging Face folder first; the converter
		// reads folders. It lives inside the temporary export folder.
		hf := filepath.Join(dir, ".merged-hf")
		if err := os.Mkdir(hf, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(hf)
		m, merged, err := MergedModel(opt.Model, opt.Adapter, opt.Quant)
		if err != nil {
			return err
		}
		res.Merged = merged
		fmt.Fprintf(opt.Log, "merged %s adapter %s\n", merged, opt.Adapter)
		hopt := opt
		hopt.ShardBytes = 0
		hopt.Progress = nil // the GGUF conversion below is what is shown
		if err := saveHF(hf, m, hopt, safetensors.F32); err != nil {
			return err
		}
		src = hf
	}
	modelPath := filepath.Join(dir, ModelGGUF)
	fmt.Fprintf(opt.Log, "writing %s (%s)\n", ModelGGUF, opt.GGUFType)
	if err := gguf.FromHF(src, modelPath, gguf.Options{Type: opt.GGUFType, Name: name, Progress: opt.Progress}); err != nil {
		return err
	}
	if err := checkGGUF(modelPath, ""); err != nil {
		return err
	}
	var adapterRef string
	if opt.GGUFAdapter {
		typ, err := peft.PeftType(opt.Adapter)
		if err != nil {
			return err
		}
		if typ != "LORA" {
			return fmt.Errorf("%s: peft_type %s cannot be a llama.cpp adapter (LORA only); merge it instead", opt.Adapter, typ)
		}
		at := gguf.F16
		if opt.GGUFType == gguf.F32 {
			at = gguf.F32
		}
		adapterPath := filepath.Join(dir, AdapterGGUF)
		fmt.Fprintf(opt.Log, "writing %s (%s)\n", AdapterGGUF, at)
		if err := gguf.AdapterFromPEFT(opt.Adapter, opt.Model, adapterPath, gguf.AdapterOptions{Type: at, Name: name + "-adapter"}); err != nil {
			return err
		}
		if err := checkGGUF(adapterPath, modelPath); err != nil {
			return err
		}
		adapterRef = "./" + AdapterGGUF
	}
	if !opt.Modelfile {
		return nil
	}
	fam, err := Family(opt.Model, opt.Adapter)
	if err != nil {
		return err
	}
	text, err := gguf.Modelfile(gguf.ModelfileOptions{From: "./" + ModelGGUF, Adapter: adapterRef, Family: fam, System: opt.System})
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, ModelfileName), []byte(text))
}

// checkGGUF runs llama.cpp's loading rules over a written file (an adapter
// when base is set), so a broken export is never put in place.
func checkGGUF(path, base string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	if base == "" {
		errs = gguf.CheckModel(f)
	} else {
		b, err := gguf.Open(base)
		if err != nil {
			return err
		}
		defer b.Close()
		errs = gguf.CheckAdapter(f, b)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s fails llama.cpp's checks: %w", filepath.Base(path), errors.Join(errs...))
	}
	return nil
}

// Family picks the Modelfile's chat family (qwen3, qwen2, llama3, mistral,
// phi3, gemma):
// from the chat template's markers when there is one (the adapter's first,
// as training stores the template it used), else from config.json's
// model_type.
func Family(modelDir, adapterDir string) (string, error) {
	path := filepath.Join(modelDir, "config.json")
	b, err := safefile.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	tmpl := ""
	for _, d := range []string{adapterDir, modelDir} {
		if d != "" && tmpl == "" {
			tmpl = chatTemplate(d)
		}
	}
	fam, famErr := family.Lookup(c.ModelType)
	switch {
	case strings.Contains(tmpl, "<|im_start|>"):
		// A ChatML template with reasoning (or a family whose own chat is
		// qwen3's) takes the thinking Modelfile.
		if famErr == nil && fam.Modelfile == "qwen3" || strings.Contains(tmpl, "<think>") {
			return "qwen3", nil
		}
		return "qwen2", nil
	case strings.Contains(tmpl, "<|start_header_id|>"):
		return "llama3", nil
	case strings.Contains(tmpl, "[INST]"):
		return "mistral", nil
	case strings.Contains(tmpl, "<|assistant|>") && strings.Contains(tmpl, "<|end|>"):
		return "phi3", nil
	case strings.Contains(tmpl, "<start_of_turn>"):
		return "gemma", nil
	}
	if famErr == nil && fam.Modelfile != "" {
		return fam.Modelfile, nil
	}
	return "", fmt.Errorf("%s: model_type %q has no Modelfile template (%s)", path, c.ModelType, strings.Join(family.Names(), ", "))
}

// chatTemplate returns a folder's chat template text: chat_template.jinja,
// or the chat_template of tokenizer_config.json. It only feeds the guess of
// the Modelfile template, so a folder that has none, or whose files do not
// read, gives "".
func chatTemplate(dir string) string {
	tc, err := hfconfig.ReadTokenizerConfig(dir)
	if err != nil {
		return ""
	}
	if tc.HasJinja {
		return tc.Jinja
	}
	if tc.TemplateForm != hfconfig.NamedTemplates {
		return tc.ChatTemplate
	}
	// A list of named templates: their text together is enough for the
	// markers.
	var all []string
	for _, t := range tc.ChatTemplates {
		all = append(all, t.Template)
	}
	return strings.Join(all, "\n")
}
