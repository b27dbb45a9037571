package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gotune/config"
	"gotune/data"
	"gotune/runlog"
	"gotune/train"
)

const dataUsage = `usage: gotune data inspect|prepare [CONFIG.yaml] [--key value ...]

Reads the datasets of a training config (LLaMA-Factory keys: dataset, dataset_dir,
model_name_or_path, template, cutoff_len, max_samples, mix_strategy, val_size, ...),
validates every record and reports what is in the data and what is wrong with it.
  inspect   counts, token-length histogram, trained-token share, per-source stats,
            filtered records and why, rendered samples with the trained text marked
            (--json for the report as JSON; without a model, lengths are characters)
  prepare   writes the tokenized cache that training memory-maps (tokenized_path,
            default OUTPUT_DIR/.data); unchanged inputs reuse it`

func runData(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, dataUsage)
		return exitError(2)
	}
	sub, args := args[0], args[1:]
	if sub != "inspect" && sub != "prepare" {
		fmt.Fprintln(stderr, dataUsage)
		return exitError(2)
	}
	asJSON, samples := false, 3
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--json":
			asJSON = true
		case a == "--samples" && i+1 < len(args):
			if _, err := fmt.Sscan(args[i+1], &samples); err != nil || samples < 0 {
				return fmt.Errorf("--samples %q: want a count ≥ 0", args[i+1])
			}
			if samples == 0 {
				samples = -1 // none
			}
			i++
		default:
			rest = append(rest, a)
		}
	}
	cfg := config.Default()
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") && !strings.Contains(rest[0], "=") {
		var err error
		if cfg, err = config.Open(rest[0], rest[1:], stderr); err != nil {
			return err
		}
	} else if err := cfg.ApplyFlags(rest); err != nil {
		return err
	}
	dc, err := train.DataConfig(cfg)
	if err != nil {
		return err
	}
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
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout, runlog.IsTerminal(stdout))
}
