package train

import (
	"fmt"
	"path/filepath"
	"strings"

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
	c := t.Cfg
	name := ckpt.Name(t.state.GlobalStep)
	t.state.MaxSteps = t.total
	err := ckpt.WriteDir(c.OutputDir, name, func(tmp string) error {
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
	if err := ckpt.Verify(dir); err != nil {
		return fmt.Errorf("resume from %s: %w", dir, err)
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
	t.printf("resumed from %s at step %d\n", dir, st.GlobalStep)
	return nil
}

// saveFinal writes the trained result into output_dir.
func (t *Trainer) saveFinal() error {
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
// uses exactly the template the model was trained on.
func (t *Trainer) writeTemplate(dir string) error {
	name := t.Cfg.Template
	if name == "" || name == "auto" || t.Cfg.Stage == "pt" {
		return nil
	}
	tmpl, err := chat.Builtin(name)
	if err != nil {
		return err
	}
	return ckpt.WriteFileAtomic(filepath.Join(dir, "chat_template.jinja"), []byte(tmpl.Source), 0o644)
}
