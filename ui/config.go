package ui

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"gotune/config"
	"gotune/data"
	"gotune/method"
	"gotune/train"
)

// keyOrder puts the keys a reader looks for first at the top of a written
// config, in the order LLaMA-Factory's examples use; others follow sorted.
var keyOrder = []string{
	"model_name_or_path", "adapter_name_or_path", "stage", "do_train", "finetuning_type",
	"lora_rank", "lora_alpha", "lora_dropout", "lora_target", "quantization_bit",
	"dataset", "dataset_dir", "template", "cutoff_len", "max_samples", "val_size",
	"per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
	"max_steps", "lr_scheduler_type", "warmup_ratio", "output_dir", "logging_steps", "save_steps",
	"save_total_limit", "overwrite_output_dir", "seed",
}

// pathKeys hold paths the page may only point inside the roots.
var pathKeys = map[string]bool{"model_name_or_path": true, "dataset_dir": true, "output_dir": true, "tokenized_path": true, "adapter_name_or_path": true}

// Settings are config keys and values as the page's form sends them:
// strings, numbers, booleans or lists.
type Settings map[string]any

// renderYAML writes settings as a YAML config in the format `gotune train`
// reads, and checks it the way `gotune train` will: unknown keys, wrong
// types and invalid combinations are errors now rather than when the job
// starts.
//
// validate=false skips the checks only training needs (a model), for
// inspection, which like `gotune data inspect` works without a model.
func (s *Server) renderYAML(set Settings, validate bool) ([]byte, *config.Config, error) {
	if len(set) == 0 {
		return nil, nil, badRequest("no settings given")
	}
	keys := make([]string, 0, len(set))
	known := config.Keys()
	for k := range set {
		if !slices.Contains(known, k) {
			return nil, nil, badRequest("unknown config key %q", k)
		}
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if i := slices.Index(keyOrder, k); i >= 0 {
			return i
		}
		return len(keyOrder)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	b.WriteString("# written by gotune ui; run it with: gotune train THIS_FILE\n")
	for _, k := range keys {
		v := set[k]
		if v == nil || v == "" {
			continue
		}
		if pathKeys[k] {
			if err := s.checkPathValue(k, v); err != nil {
				return nil, nil, err
			}
		}
		if k == "dataset" {
			if err := s.checkDatasets(v); err != nil {
				return nil, nil, err
			}
		}
		node := &yaml.Node{}
		if err := node.Encode(v); err != nil {
			return nil, nil, badRequest("%s: %v", k, err)
		}
		if node.Kind == yaml.MappingNode {
			return nil, nil, badRequest("%s: a mapping is not a value the form can set", k)
		}
		if node.Kind == yaml.SequenceNode {
			node.Style = yaml.FlowStyle
		}
		line, err := yaml.Marshal(map[string]*yaml.Node{k: node})
		if err != nil {
			return nil, nil, badRequest("%s: %v", k, err)
		}
		b.Write(line)
	}
	text := []byte(b.String())
	cfg, err := config.Parse(text, "config")
	if err != nil {
		return nil, nil, badRequest("%v", err)
	}
	if !validate {
		return text, cfg, nil
	}
	if err := method.Validate(cfg); err != nil {
		return nil, nil, badRequest("%v", err)
	}
	return text, cfg, nil
}

func (s *Server) checkPathValue(key string, v any) error {
	var ps []string
	switch x := v.(type) {
	case string:
		ps = []string{x}
	case []any:
		for _, e := range x {
			str, ok := e.(string)
			if !ok {
				return badRequest("%s: want paths as strings", key)
			}
			ps = append(ps, str)
		}
	default:
		return badRequest("%s: want a path", key)
	}
	for _, p := range ps {
		if !filepath.IsAbs(p) {
			return badRequest("%s: %q: give an absolute path (the pickers do)", key, p)
		}
		if _, err := s.resolve(p, key == "output_dir" || key == "tokenized_path"); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// checkDatasets refuses dataset entries that are file paths outside the
// roots; names of dataset_info.json entries are checked by the data package.
func (s *Server) checkDatasets(v any) error {
	var names []string
	switch x := v.(type) {
	case string:
		names = strings.Split(x, ",")
	case []any:
		for _, e := range x {
			str, ok := e.(string)
			if !ok {
				return badRequest("dataset: want names or paths as strings")
			}
			names = append(names, str)
		}
	default:
		return badRequest("dataset: want a name, a path or a list of them")
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if filepath.IsAbs(n) || strings.ContainsRune(n, filepath.Separator) || strings.Contains(n, "..") {
			if _, err := s.resolve(n, false); err != nil {
				return fmt.Errorf("dataset: %w", err)
			}
		}
	}
	return nil
}

// handleConfig renders the page's settings as the YAML `gotune train` takes.
func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Settings Settings `json:"settings"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	text, cfg, err := s.renderYAML(req.Settings, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"yaml": string(text), "warnings": cfg.Warnings})
}

// handleInspect runs what `gotune data inspect` runs for the same keys.
func (s *Server) handleInspect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Settings Settings `json:"settings"`
		Samples  int      `json:"samples"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Samples < 0 || req.Samples > 50 {
		s.fail(w, r, badRequest("samples: want 0 to 50"))
		return
	}
	if req.Settings["dataset"] == nil {
		s.fail(w, r, badRequest("settings.dataset: pick a dataset"))
		return
	}
	_, cfg, err := s.renderYAML(req.Settings, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dc, err := train.DataConfig(cfg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var enc *data.Encoder
	if cfg.ModelNameOrPath != "" {
		if enc, err = train.Encoder(cfg.ModelNameOrPath, cfg.Template, dc.Encode); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	samples := req.Samples
	if samples == 0 {
		samples = 3
	}
	rep, err := data.Inspect(dc, enc, data.InspectOptions{Samples: samples})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	rep.WriteJSON(w)
}

// writeFileNew writes a file that must not exist yet.
func writeFileNew(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
