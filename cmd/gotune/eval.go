package main

import (
	"encoding/json"
	"fmt"
	"io"

	"gotune/config"
	"gotune/runlog"
	"gotune/train"
)

const evalUsage = `usage: gotune eval CONFIG.yaml [--adapter DIR] [--json] [--key value ...]

Scores the model of a training config (model_name_or_path, dataset, dataset_dir, template,
cutoff_len, ...) on its datasets: mean loss and perplexity of the tokens training would train on,
per dataset and overall. With --adapter the fine-tuned model is scored as well, beside the base:
evaluating on general data shows how much general ability the fine-tune cost.

flags (in any order with the config file):
  --adapter DIR  PEFT adapter folder to score beside the base
  --json         print the results as JSON
  --key value    any config key (--key=value and key=value too), over the file's;
                 'gotune train -h' lists the keys`

func runEval(args []string, stdout, stderr io.Writer) error {
	if wantsHelp(args) {
		fmt.Fprintln(stdout, evalUsage)
		return nil
	}
	adapter, asJSON := "", false
	rest, err := takeFlags(args, map[string]*bool{"json": &asJSON}, map[string]*string{"adapter": &adapter})
	if err != nil {
		return err
	}
	path, overrides, err := configArgs(rest)
	if err != nil {
		return err
	}
	if path == "" {
		fmt.Fprintln(stderr, evalUsage)
		return exitError(2)
	}
	cfg, err := config.Open(path, overrides, stderr)
	if err != nil {
		return err
	}
	dir, err := modelPath(cfg.ModelNameOrPath)
	if err != nil {
		return err
	}
	dev, release, err := trainDevice(cfg.Device, stderr)
	if err != nil {
		return err
	}
	defer release()
	withDevice := func(o train.EvalOptions) train.EvalOptions {
		o.Backend, o.Fallback = dev.Backend, dev.Fallback
		return o
	}
	base, err := train.Evaluate(cfg, dir, "", withDevice(evalProgress(stderr, "base")))
	if err != nil {
		return err
	}
	var tuned []train.EvalResult
	if adapter != "" {
		if tuned, err = train.Evaluate(cfg, dir, adapter, withDevice(evalProgress(stderr, "adapter"))); err != nil {
			return err
		}
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"base": base, "adapter": tuned})
	}
	fmt.Fprintf(stdout, "%-20s %8s %9s %10s %12s", "dataset", "samples", "tokens", "loss", "perplexity")
	if tuned != nil {
		fmt.Fprintf(stdout, " %10s %12s", "loss (ft)", "ppl (ft)")
	}
	fmt.Fprintln(stdout)
	for i, r := range base {
		fmt.Fprintf(stdout, "%-20s %8d %9d %10.4f %12.3f", r.Dataset, r.Samples, r.Tokens, r.Loss, r.Perplexity)
		if tuned != nil {
			fmt.Fprintf(stdout, " %10.4f %12.3f", tuned[i].Loss, tuned[i].Perplexity)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// evalProgress shows reading the data and scoring the samples with rate and
// ETA on a terminal (nothing on a pipe).
func evalProgress(w io.Writer, what string) train.EvalOptions {
	var reading, scoring *runlog.Meter
	return train.EvalOptions{
		DataProgress: func(done, total int64) {
			if reading == nil {
				reading = runlog.NewMeter(w, "reading data", "B", total)
			}
			reading.Set(done, total)
			if done >= total {
				reading.Done()
			}
		},
		Progress: func(done, total int) {
			if scoring == nil {
				scoring = runlog.NewMeter(w, "scoring "+what, "samples", int64(total))
			}
			scoring.Set(int64(done), int64(total))
			if done >= total {
				scoring.Done()
			}
		},
	}
}
