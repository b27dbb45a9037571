package main

import (
	"fmt"
	"io"
	"path/filepath"

	"gotune/config"
	"gotune/data"
	"gotune/runlog"
	"gotune/train"
)

const dataUsage = `usage: gotune data inspect|prepare [CONFIG.yaml] [flags] [--key value ...]

Reads the datasets of a training config (LLaMA-Factory keys: dataset, dataset_dir,
model_name_or_path, template, cutoff_len, max_samples, mix_strategy, val_size, ...),
validates every record and reports what is in the data and what is wrong with it.
  inspect   counts, token-length histogram, trained-token share, per-source stats,
            filtered records and why, rendered samples with the trained text marked
            (without a model, lengths are characters)
  prepare   writes the tokenized cache that training memory-maps (tokenized_path,
            default OUTPUT_DIR/.data); unchanged inputs reuse it

flags (in any order with the config file):
  --json        inspect: print the report as JSON
  --samples N   inspect: rendered samples to show (0: none; default 3)
  --key value   any config key (--key=value and key=value too), over the file's;
                'gotune train -h' lists the keys`

func runData(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (wantsHelp(args[:1]) || (args[0] == "inspect" || args[0] == "prepare") && wantsHelp(args[1:])) {
		fmt.Fprintln(stdout, dataUsage)
		return nil
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, dataUsage)
		return exitError(2)
	}
	sub, args := args[0], args[1:]
	if sub != "inspect" && sub != "prepare" {
		fmt.Fprintf(stderr, "gotune data: unknown subcommand %q\n\n%s\n", sub, dataUsage)
		return exitError(2)
	}
	asJSON, samplesText := false, ""
	rest, err := takeFlags(args, map[string]*bool{"json": &asJSON}, map[string]*string{"samples": &samplesText})
	if err != nil {
		return err
	}
	samples := 3
	if samplesText != "" {
		if _, err := fmt.Sscan(samplesText, &samples); err != nil || samples < 0 {
			return fmt.Errorf("--samples %q: want a count ≥ 0", samplesText)
		}
		if samples == 0 {
			samples = -1 // none
		}
	}
	if sub == "prepare" && (asJSON || samplesText != "") {
		return fmt.Errorf("--json and --samples apply to inspect, not prepare")
	}
	path, overrides, err := configArgs(rest)
	if err != nil {
		return err
	}
	cfg := config.Default()
	if path != "" {
		if cfg, err = config.Open(path, overrides, stderr); err != nil {
			return err
		}
	} else if err := cfg.ApplyFlags(overrides); err != nil {
		return err
	}
	if cfg.Stage == "grpo" {
		// Prompts are rendered and completions sampled during training:
		// there is nothing to tokenize ahead, but the prompts and the columns
		// the rewards read can be checked.
		if sub == "prepare" {
			return fmt.Errorf("stage grpo samples its completions while training: nothing to prepare (data inspect checks the prompts)")
		}
		if cfg.ModelNameOrPath, err = modelPath(cfg.ModelNameOrPath); err != nil {
			return err
		}
		return train.InspectPrompts(cfg, stdout)
	}
	dc, err := train.DataConfig(cfg)
	if err != nil {
		return err
	}
	// Reading shows its progress on a terminal (stderr), nothing on a pipe.
	meter := runlog.NewMeter(stderr, "reading data", "B", 0)
	defer meter.Done()
	dc.Progress = func(done, total int64) { meter.Set(done, total) }
	var enc *data.Encoder
	if cfg.ModelNameOrPath != "" {
		if cfg.ModelNameOrPath, err = modelPath(cfg.ModelNameOrPath); err != nil {
			return err
		}
		if enc, err = train.Encoder(cfg.ModelNameOrPath, cfg.Template, dc.Encode); err != nil {
			return err
		}
	}
	if sub == "prepare" {
		if enc == nil {
			return fmt.Errorf("prepare needs model_name_or_path for the tokenizer and chat template")
		}
		dir := cfg.TokenizedPath
		if dir == "" {
			dir = filepath.Join(cfg.OutputDir, ".data")
		}
		cache, err := data.Prepare(dc, enc, dir)
		meter.Done()
		if err != nil {
			return err
		}
		defer cache.Close()
		fmt.Fprintf(stdout, "%s: %d samples (%d train, %d validation)\n", cache.Path(), cache.Len(), len(cache.Train()), len(cache.Val()))
		if rep := cache.Report(); rep != nil {
			return rep.WriteText(stdout, runlog.IsTerminal(stdout))
		}
		return nil
	}
	rep, err := data.Inspect(dc, enc, data.InspectOptions{Samples: samples})
	meter.Done()
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout, runlog.IsTerminal(stdout))
}
