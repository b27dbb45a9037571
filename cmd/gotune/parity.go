package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gotune/chat"
	"gotune/checks"
	"gotune/compute"
	"gotune/compute/ref"
	"gotune/parity"
	"gotune/tokenizer"
)

func runParity(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("parity", `usage: gotune parity PATH...

Checks gotune against reference outputs. Each PATH may be:
  a reference model folder (model/ + ref/): logits, loss, greedy ids, gradients,
      training trajectories and every PEFT method folder found in ref/
  a schedules.json with learning-rate schedules
  a tokenizer folder holding tokenizer_cases.json
  a llama.cpp vocabulary .gguf with its .inp/.out beside it
  a renders.json with the chat templates beside it
  a folder holding a reference tree: every such item inside it is checked
Model folders run on --device: cpu (the default: the CPU backend), cuda (a
GPU) or ref (the plain-Go reference backend; slow), every check on each, in
--dtype f32 (the limits of the reference data) or bf16 (mixed precision:
limits --bf16-limit and --bf16-grad-limit, against PyTorch's own
bf16-vs-f32 deviation; check names start with "bf16.").
Prints one JSON object per check, then "N passed, M failed"; exits 1 on failure.`, args, stdout, stderr)
	device := fs.String("device", "cpu", "where the model checks run: cpu (the CPU backend), cuda, or ref (the reference backend); host is another name for cpu")
	dtype := fs.String("dtype", "f32", "f32 or bf16")
	bf16Limit := fs.Float64("bf16-limit", 5e-3, "with --dtype bf16: the largest relative loss deviation allowed (PyTorch's own bf16 run moved up to 4.0e-3 from its f32 run on these trajectories, H200)")
	bf16GradLimit := fs.Float64("bf16-grad-limit", 4e-2, "with --dtype bf16: the largest relative deviation of gradients, logits and trained adapters allowed (PyTorch's own gradients: 1.5-2.1e-2)")
	paths, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		fs.Usage()
		return exitError(2)
	}
	var be compute.Backend
	if *device == "ref" {
		be = ref.New()
	} else {
		b, closeDev, err := openBackend(*device)
		if err != nil {
			return err
		}
		defer closeDev()
		be = b
	}
	o := parity.DeviceOptions{Backend: be, Compute: compute.F32}
	switch *dtype {
	case "f32":
	case "bf16":
		o.Compute, o.Limit, o.GradLimit = compute.BF16, *bf16Limit, *bf16GradLimit
	default:
		return fmt.Errorf("parity: --dtype %q (want f32 or bf16)", *dtype)
	}
	var all []checks.Result
	for _, p := range paths {
		res, err := parityPath(p, 0, o)
		if err != nil {
			all = append(all, checks.Result{Check: p, Metric: "error", Value: 1, Limit: 0, Detail: err.Error()})
			continue
		}
		if len(res) == 0 {
			all = append(all, checks.Result{Check: p, Metric: "error", Value: 1, Limit: 0, Detail: "no reference data recognised here"})
		}
		all = append(all, res...)
	}
	if checks.Write(stdout, all) > 0 {
		return exitError(1)
	}
	return nil
}

// parityPath recognises what a path holds and runs the matching checks,
// descending into folders that hold several references.
func parityPath(path string, depth int, o parity.DeviceOptions) ([]checks.Result, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return parityFile(path)
	}
	if isDir(filepath.Join(path, "model")) && isDir(filepath.Join(path, "ref")) {
		res, err := parity.RunModel(path, o)
		return prefixed(filepath.Base(path), res, err)
	}
	if exists(filepath.Join(path, "tokenizer_cases.json")) {
		res, err := tokenizer.CheckCases(path)
		return prefixed("tokenizer."+filepath.Base(path), res, err)
	}
	var out []checks.Result
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(path, n)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			if depth >= 3 {
				continue
			}
			res, err := parityPath(p, depth+1, o)
			if err != nil {
				out = append(out, checks.Result{Check: p, Metric: "error", Value: 1, Detail: err.Error()})
			}
			out = append(out, res...)
			continue
		}
		if recognisedFile(n) {
			res, err := parityFile(p)
			if err != nil {
				out = append(out, checks.Result{Check: p, Metric: "error", Value: 1, Detail: err.Error()})
			}
			out = append(out, res...)
		}
	}
	return out, nil
}

func recognisedFile(name string) bool {
	return name == "schedules.json" || name == "renders.json" || strings.HasSuffix(name, ".gguf")
}

func parityFile(path string) ([]checks.Result, error) {
	switch base := filepath.Base(path); {
	case base == "schedules.json":
		return parity.Schedules(path)
	case base == "renders.json":
		res, err := chat.CheckRenders(path)
		return prefixed("chat_templates", res, err)
	case strings.HasSuffix(base, ".gguf") && exists(path+".inp"):
		res, err := tokenizer.CheckLlamaCppVocab(path)
		return prefixed("llamacpp_vocab."+strings.TrimSuffix(base, ".gguf"), res, err)
	default:
		return nil, errors.New("not a recognised reference file")
	}
}

func prefixed(prefix string, res []checks.Result, err error) ([]checks.Result, error) {
	for i := range res {
		if !strings.HasPrefix(res[i].Check, prefix+".") {
			res[i].Check = prefix + "." + res[i].Check
		}
	}
	return res, err
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
