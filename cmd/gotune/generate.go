package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"gotune/assets"
	"gotune/chat"
	"gotune/hub"
	"gotune/infer"
)

// modelPath resolves --model: a local folder or .gguf file as it is, a
// Hugging Face repo id ("Qwen/Qwen3-0.6B") downloaded into the hub cache
// (HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE apply), and the bundled tiny
// model when empty.
func modelPath(p string) (string, error) {
	if p == "" {
		return assets.ModelDir(assets.DefaultModel, "")
	}
	local, remote := hub.Resolve(p)
	if !remote {
		return local, nil
	}
	c := hub.NewClient()
	c.Progress = os.Stderr
	return c.Download(context.Background(), p, "", hub.Options{})
}

func sampleFlags(fs *flag.FlagSet) *infer.SampleOptions {
	o := &infer.SampleOptions{}
	fs.Float64Var(&o.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fs.IntVar(&o.TopK, "top-k", 0, "sample among the k most likely tokens (0: all)")
	fs.Float64Var(&o.TopP, "top-p", 1, "sample from the smallest set holding this probability mass")
	fs.Float64Var(&o.RepetitionPenalty, "repetition-penalty", 1, "penalise tokens already present (1: off)")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed for sampling")
	return o
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", `usage: gotune generate [MODEL] [PROMPT] [flags]

Generates a reply to a user message with the model's chat template, or with --raw continues
plain text. MODEL is a model folder, .gguf file or Hub repo id (or --model; default: the bundled
`+assets.DefaultModel+`). PROMPT is the message (or --prompt); with --model given, a single
positional argument is the prompt. Arguments and flags may come in any order.`, args, stdout, stderr)
	modelDir := fs.String("model", "", "model folder (Hugging Face layout) or .gguf file; default: the bundled "+assets.DefaultModel)
	adapter := fs.String("adapter", "", "PEFT adapter folder to attach")
	prompt := fs.String("prompt", "What does LoRA train?", "user message (or raw text with --raw)")
	system := fs.String("system", "", "system message")
	raw := fs.Bool("raw", false, "continue the prompt as plain text, without the chat template")
	maxNew := fs.Int("max-new-tokens", 32, "tokens to generate at most")
	sample := sampleFlags(fs)
	device := fs.String("device", "auto", "cpu, cuda (bf16 on an NVIDIA GPU) or auto (the GPU when there is one and the model can run there)")
	kwargs := templateKwargs{}
	fs.Var(kwargs, "template-kwarg", "KEY=VALUE passed to the chat template (JSON value or plain text), e.g. enable_thinking=false; repeatable")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelDir == "" && len(pos) > 0 {
		*modelDir, pos = pos[0], pos[1:]
	}
	switch {
	case len(pos) > 1:
		return fmt.Errorf("unexpected arguments %q: give one model and one prompt (quote a prompt with spaces)", pos)
	case len(pos) == 1 && flagSet(fs, "prompt"):
		return fmt.Errorf("prompt given twice: %q and --prompt %q", pos[0], *prompt)
	case len(pos) == 1:
		*prompt = pos[0]
	}
	dir, err := modelPath(*modelDir)
	if err != nil {
		return err
	}
	e, err := infer.Load(dir, *adapter)
	if err != nil {
		return err
	}
	release, err := useDevice(e, *device, stderr)
	if err != nil {
		return err
	}
	defer release()
	text := *prompt
	if !*raw {
		var msgs []chat.Message
		if *system != "" {
			msgs = append(msgs, chat.NewMessage("system", *system))
		}
		msgs = append(msgs, chat.NewMessage("user", *prompt))
		if err := kwargs.check(e); err != nil {
			return err
		}
		if text, err = e.Prompt(msgs, chat.Options{Extra: kwargs.extra()}); err != nil {
			return err
		}
	}
	start := time.Now()
	res, err := e.Generate(infer.Request{Prompt: text, MaxTokens: *maxNew, Sample: *sample, Raw: *raw,
		OnText: func(s string) { fmt.Fprint(stdout, s) }})
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "\n")
	fmt.Fprintf(stderr, "[%d prompt tokens, %d generated, %s, %.1f tokens/s, model %s]\n",
		res.PromptTokens, len(res.Tokens), res.FinishReason, float64(len(res.Tokens))/el, dir)
	return nil
}
