package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"gotune/chat"
	"gotune/ckpt"
	"gotune/model"
	"gotune/optim"
	"gotune/plot"
)

// trainableDir holds, inside a checkpoint, the trainable tensors of an
// adapter method by their in-memory names, for exact resume.
const trainableDir = "trainable"

// saveWeights writes what was trained: the adapter in PEFT's layout, or the
// whole model for full and freeze tuning.
func (t *Trainer) saveWeights(dir string) error {
	if t.Method != nil {
		return t.Method.Save(dir)
	}
	if err := model.SaveWeights(dir, t.Model.Params(), model.SaveOptions{}); err != nil {
		return err
	}
	return model.CopyModelFiles(t.ModelDir, dir)
}

func (t *Trainer) saveCheckpoint() error {
	if err := t.syncFromDevice(); err != nil {
		return err
	}
	c := t.Cfg
	name := ckpt.Name(t.state.GlobalStep)
	t.state.MaxSteps = t.total
	err := ckpt.WriteRunDir(c.OutputDir, name, t.run, func(tmp string) error {
		if err := t.saveWeights(tmp); err != nil {
			return err
		}
		if t.Method != nil {
			// Every trainable tensor by its in-memory name: what PEFT's
			// format saves is not always what training needs (P-tuning
			// saves the encoder's output, not the encoder).
			if err := model.SaveWeights(filepath.Join(tmp, trainableDir), t.Params, model.SaveOptions{}); err != nil {
				return err
			}
		}
		if err := optim.SaveFile(t.opt, filepath.Join(tmp, optim.StateFile)); err != nil {
			return err
		}
		if t.pref != nil {
			if err := t.pref.save(t, tmp); err != nil {
				return err
			}
		}
		if t.grpo != nil {
			if err := t.grpo.save(tmp); err != nil {
				return err
			}
		}
		return ckpt.SaveTrainerState(tmp, &t.state)
	})
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if c.SaveTotalLimit != nil && *c.SaveTotalLimit > 0 {
		if err := ckpt.Rotate(c.OutputDir, ckpt.Prefix, *c.SaveTotalLimit); err != nil {
			return err
		}
	}
	t.log.Printf("saved %s", filepath.Join(c.OutputDir, name))
	return nil
}

// maybeResume restores weights, optimizer and trainer state from
// resume_from_checkpoint ("true"/"latest" picks the newest in output_dir).
func (t *Trainer) maybeResume() error {
	c := t.Cfg
	r := strings.TrimSpace(c.ResumeFromCheckpoint)
	if r == "" || r == "false" {
		return nil
	}
	dir := r
	if r == "true" || r == "latest" {
		if err := ckpt.Recover(c.OutputDir); err != nil {
			return err
		}
		p, _, err := ckpt.Latest(c.OutputDir)
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		dir = p
	}
	// Every file against its checksum: optimizer state damaged at the same
	// size (NaN written over it) would otherwise load and train to NaN.
	if err := ckpt.VerifyContents(dir); err != nil {
		return fmt.Errorf("resume from %s: %w", dir, err)
	}
	man, err := ckpt.ReadManifest(dir)
	if err != nil {
		return fmt.Errorf("resume from %s: %w", dir, err)
	}
	if man.Run != nil {
		if diff := diffRun(man.Run, t.run); diff != "" {
			return fmt.Errorf("resume from %s: the checkpoint belongs to a different run (%s); resume with the configuration, data and model it was trained with, or start over with overwrite_output_dir: true and no resume_from_checkpoint", dir, diff)
		}
	}
	if t.Method == nil {
		if err := model.LoadParams(dir, t.Model.Params()); err != nil {
			return err
		}
	} else if err := model.LoadParams(filepath.Join(dir, trainableDir), t.Params); err != nil {
		return err
	}
	if err := optim.LoadFile(t.opt, filepath.Join(dir, optim.StateFile)); err != nil {
		return err
	}
	st, err := ckpt.LoadTrainerState(dir)
	if err != nil {
		return err
	}
	t.state = *st
	t.resumed = dir
	if t.grpo != nil {
		if err := t.grpo.load(dir); err != nil {
			return err
		}
	}
	t.printf("resumed from %s at step %d\n", dir, st.GlobalStep)
	return nil
}

// saveFinal writes the trained result into output_dir.
func (t *Trainer) saveFinal() error {
	if err := t.syncFromDevice(); err != nil {
		return err
	}
	c := t.Cfg
	if err := t.saveWeights(c.OutputDir); err != nil {
		return err
	}
	if t.Method != nil {
		// PEFT folders carry the tokenizer so they load on their own.
		if err := model.CopyTokenizerFiles(t.ModelDir, c.OutputDir); err != nil {
			return err
		}
	}
	if err := t.writeTemplate(c.OutputDir); err != nil {
		return err
	}
	t.state.MaxSteps = t.total
	if err := ckpt.SaveTrainerState(c.OutputDir, &t.state); err != nil {
		return err
	}
	// Loss curves beside the weights, as LLaMA-Factory's plot_loss; a
	// picture that cannot be drawn is no reason to fail a finished run.
	if _, err := plot.WriteRunCharts(c.OutputDir); err != nil {
		t.log.Printf("warning: loss chart: %v", err)
	}
	t.log.Printf("saved %s", c.OutputDir)
	return nil
}

// writeTemplate stores the chat template training rendered with, when it
// was a built-in one, as the output's chat_template.jinja: inference then
// uses exactly the template the model was trained on. A run with
// enable_thinking: false also stores the model's own template when that one
// reads enable_thinking, and in either case makes false the default, so that
// a request that does not say renders the prompt the model was trained on
// (the empty <think> block), not one that asks it to think.
func (t *Trainer) writeTemplate(dir string) error {
	if t.Cfg.Stage == "pt" {
		return nil
	}
	var tmpl *chat.Template
	var err error
	switch name := t.Cfg.Template; {
	case name != "" && name != "auto":
		tmpl, err = chat.Builtin(name)
	case !t.Cfg.EnableThinking:
		tmpl, err = chat.Load(t.ModelDir)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	src := tmpl.Source
	if !t.Cfg.EnableThinking && strings.Contains(src, "enable_thinking") {
		src = thinkingOffByDefault + src
	} else if t.Cfg.Template == "" || t.Cfg.Template == "auto" {
		return nil // the model's own template, unchanged: nothing to store
	}
	return ckpt.WriteFileAtomic(filepath.Join(dir, "chat_template.jinja"), []byte(src), 0o644)
}

// thinkingOffByDefault starts the template of a model trained with
// enable_thinking: false; chat_template_kwargs {"enable_thinking": true}
// still turns thinking on.
const thinkingOffByDefault = "{%- if enable_thinking is not defined %}{%- set enable_thinking = false %}{%- endif %}"

// runControl are configuration keys that steer a run without changing what
// it computes (where it writes, how often it logs or saves, how it shows
// progress), so a resume may change them.
var runControl = map[string]bool{
	"model_name_or_path": true, "dataset_dir": true, "tokenized_path": true, "output_dir": true,
	"overwrite_output_dir": true, "resume_from_checkpoint": true, "logging_steps": true,
	"save_strategy": true, "save_steps": true, "save_total_limit": true, "eval_strategy": true,
	"eval_steps": true, "per_device_eval_batch_size": true, "do_eval": true, "do_train": true,
	"eval_dataset": true, "device": true, "threads": true, "progress": true,
}

// runIdentity describes what a checkpoint must share with this run to be
// resumed by it: every configuration key that shapes the computation, the
// prepared data (its cache key covers the files, the tokenizer and the
// template), and the model's config.json.
func (t *Trainer) runIdentity() (map[string]string, error) {
	b, err := t.Cfg.YAML()
	if err != nil {
		return nil, err
	}
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("run identity: %w", err)
	}
	id := map[string]string{}
	for k, v := range keys {
		if !runControl[k] {
			id[k] = fmt.Sprint(v) // fmt sorts map keys: stable text
		}
	}
	if t.cache != nil {
		id["data"] = t.cache.ContentSum()
	}
	if t.grpo != nil {
		id["data"] = t.grpo.sum
	}
	if cj, err := os.ReadFile(filepath.Join(t.ModelDir, "config.json")); err == nil {
		sum := sha256.Sum256(cj)
		id["model"] = hex.EncodeToString(sum[:8])
	}
	return id, nil
}

// diffRun names what differs between a checkpoint's run and this one ("" if
// nothing does), a few keys at most.
func diffRun(was, now map[string]string) string {
	keys := make([]string, 0, len(was)+len(now))
	for k := range was {
		keys = append(keys, k)
	}
	for k := range now {
		if _, ok := was[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var diffs []string
	for _, k := range keys {
		a, inA := was[k]
		b, inB := now[k]
		if inA && inB && a == b {
			continue
		}
		switch k {
		case "data":
			diffs = append(diffs, "the prepared data differs (dataset files, tokenizer or template)")
		case "model":
			diffs = append(diffs, "the model's config.json differs")
		default:
			if !inA {
				a = "unset"
			}
			if !inB {
				b = "unset"
			}
			diffs = append(diffs, fmt.Sprintf("%s was %s, now %s", k, a, b))
		}
	}
	if len(diffs) > 4 {
		diffs = append(diffs[:4], fmt.Sprintf("and %d more", len(diffs)-4))
	}
	return strings.Join(diffs, "; ")
}
