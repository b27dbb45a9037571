// Command gotune fine-tunes open large language models from one binary:
// prepare data, train (full, LoRA family, QLoRA, prompt methods), evaluate,
// export and serve.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"generate":   {"generate text from a model folder (greedy or sampled)", runGenerate},
		"parity":     {"check gotune against reference outputs of the Python stack", runParity},
		"bench":      {"measure kernels, forward and training throughput", runBench},
		"data":       {"inspect or prepare datasets: validation, statistics, masks, tokenized cache", runData},
		"eval":       {"loss and perplexity of a model (and a fine-tune) on the datasets of a config", runEval},
		"train":      {"fine-tune a model from a LLaMA-Factory style YAML config", runTrain},
		"plan":       {"estimate memory and step time of each fine-tuning method and recommend one", runPlan},
		"quickstart": {"train a LoRA adapter on the bundled tiny model and data, and compare answers", runQuickstart},
		"export":     {"write a merged Hugging Face model, a PEFT adapter or GGUF (+ Ollama Modelfile)", runExport},
		"chat":       {"chat with a model in the terminal (streams, keeps history)", runChat},
		"serve":      {"serve an OpenAI-compatible HTTP API for a model and its adapters", runServe},
		"ui":         {"serve the web UI: data, training runs and their charts, chat, export", runUI},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gotune <command> [flags]\n\ncommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'gotune <command> -h' for a command's flags, 'gotune --version' for the version.")
}

// exitError carries an exit status without printing anything more.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			// gotune help CMD is gotune CMD -h.
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		fmt.Fprintln(stdout, version())
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gotune: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd.run(args[1:], stdout, stderr); err != nil {
		if code, ok := err.(exitError); ok {
			return int(code)
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the flag set printed the usage that was asked for
		}
		fmt.Fprintf(stderr, "gotune %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
