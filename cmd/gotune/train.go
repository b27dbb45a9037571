package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"gotune/assets"
	"gotune/chat"
	"gotune/config"
	"gotune/infer"
	"gotune/train"
)

const trainUsage = `usage: gotune train CONFIG.yaml [--key value ...]

Fine-tunes a model from a LLaMA-Factory style YAML config. Every key of the file can also be
given as --key value, --key=value or key=value, before or after the config file; the command
line overrides the file. Try 'gotune quickstart' for a bundled example.`

func runTrain(args []string, stdout, stderr io.Writer) error {
	if wantsHelp(args) {
		fmt.Fprintln(stdout, trainUsage+"\n\nkeys (as --key value):\n  "+strings.Join(config.Keys(), "\n  "))
		return nil
	}
	path, overrides, err := configArgs(args)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, trainUsage+"\n\n'gotune train -h' lists the keys.")
		return exitError(2)
	}
	cfg, err := config.Open(path, overrides, stderr)
	if err != nil {
		return err
	}
	if cfg.ModelNameOrPath != "" {
		if cfg.ModelNameOrPath, err = modelPath(cfg.ModelNameOrPath); err != nil {
			return err
		}
	}
	o, release, err := trainDevice(cfg.Device, stderr)
	if err != nil {
		return err
	}
	defer release()
	t, err := train.New(cfg, "", stderr, o)
	var pre *train.PreprocessedError
	if errors.As(err, &pre) {
		fmt.Fprintln(stdout, pre.Error())
		return nil
	}
	if err != nil {
		return err
	}
	defer t.Close()
	return t.Run()
}

// runQuickstart trains a LoRA adapter on the bundled tiny model and dataset
// and shows the model's answers before and after.
func runQuickstart(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("quickstart", `usage: gotune quickstart [key=value ...] [flags]

Extracts the bundled tiny model and question/answer pairs, trains a LoRA adapter on them for a
few seconds and prints the model's answers before and after. key=value arguments override keys
of the bundled config (e.g. num_train_epochs=2).`, args, stdout, stderr)
	out := fs.String("output-dir", "runs/quickstart", "where the adapter and logs go")
	overrides, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	modelDir, err := assets.ModelDir(assets.DefaultModel, "")
	if err != nil {
		return err
	}
	dataDir, err := assets.DataDir("")
	if err != nil {
		return err
	}
	cfg, err := config.Parse(assets.QuickstartConfig(), "quickstart.yaml")
	if err != nil {
		return err
	}
	cfg.ModelNameOrPath, cfg.DatasetDir, cfg.OutputDir = modelDir, dataDir, *out
	if err := cfg.ApplyFlags(overrides); err != nil {
		return err
	}
	questions := []string{"What does LoRA train?", "What do bees make?", "Name the capital of France."}
	before, err := answers(modelDir, "", cfg.Device, questions, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Fine-tuning the bundled %s (random weights) with LoRA on %d question/answer pairs.\n\n", assets.DefaultModel, 12)
	o, release, err := trainDevice(cfg.Device, stderr)
	if err != nil {
		return err
	}
	defer release()
	t, err := train.New(cfg, "", stdout, o)
	if err != nil {
		return err
	}
	if err := t.Run(); err != nil {
		return err
	}
	after, err := answers(modelDir, cfg.OutputDir, cfg.Device, questions, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for i, q := range questions {
		fmt.Fprintf(stdout, "Q: %s\n  before: %q\n  after:  %q\n", q, before[i], after[i])
	}
	fmt.Fprintf(stdout, "\nThe adapter is in %s (PEFT layout). Try:\n  gotune generate --model %s --adapter %s --prompt %q\n", cfg.OutputDir, modelDir, cfg.OutputDir, questions[0])
	return nil
}

func answers(modelDir, adapter, device string, questions []string, notes io.Writer) ([]string, error) {
	e, err := infer.Load(modelDir, adapter)
	if err != nil {
		return nil, err
	}
	release, err := useDevice(e, device, notes)
	if err != nil {
		return nil, err
	}
	defer release()
	var out []string
	for _, q := range questions {
		p, err := e.Prompt([]chat.Message{chat.NewMessage("user", q)}, chat.Options{})
		if err != nil {
			return nil, err
		}
		r, err := e.Generate(infer.Request{Prompt: p, MaxTokens: 48})
		if err != nil {
			return nil, err
		}
		out = append(out, withoutEmptyThink(r.Text))
	}
	return out, nil
}

// withoutEmptyThink drops an empty reasoning block in front of an answer
// (Qwen3-style templates train "<think>\n\n</think>\n\n" before every
// answer without reasoning), so the comparison shows the answer itself.
func withoutEmptyThink(s string) string {
	rest, ok := strings.CutPrefix(s, "<think>")
	if !ok {
		return s
	}
	inside, after, ok := strings.Cut(rest, "</think>")
	if !ok || strings.TrimSpace(inside) != "" {
		return s
	}
	return strings.TrimLeft(after, "\n")
}
