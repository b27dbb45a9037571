package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gotune/config"
	"gotune/train"
)

func runEval(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, `usage: gotune eval CONFIG.yaml [--adapter DIR] [--json] [--key value ...]

Scores the model of a training config (model_name_or_path, dataset, dataset_dir, template,
cutoff_len, ...) on its datasets: mean loss and perplexity of the tokens training would train on,
per dataset and overall. With --adapter the fine-tuned model is scored as well, beside the base:
evaluating on general data shows how much general ability the fine-tune cost.`)
		return exitError(2)
	}
	adapter, asJSON := "", false
	var rest []string
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "--json":
			asJSON = true
		case args[i] == "--adapter" && i+1 < len(args):
			adapter = args[i+1]
			i++
		case strings.HasPrefix(args[i], "--adapter="):
			adapter = strings.TrimPrefix(args[i], "--adapter=")
		default:
			rest = append(rest, args[i])
		}
	}
	cfg, err := config.Open(args[0], rest, stderr)
	if err != nil {
		return err
	}
	dir, err := modelPath(cfg.ModelNameOrPath)
	if err != nil {
		return err
	}
	base, err := train.Evaluate(cfg, dir, "")
	if err != nil {
		return err
	}
	var tuned []train.EvalResult
	if adapter != "" {
		if tuned, err = train.Evaluate(cfg, dir, adapter); err != nil {
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
