package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gotune/config"
	"gotune/export"
	"gotune/quant"
	"gotune/runlog"
)

func runExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", `usage: gotune export [BASE] --model BASE [--adapter DIR] --out DIR [flags]
       gotune export CONFIG.yaml [flags]   (LLaMA-Factory's keys: model_name_or_path,
                                           adapter_name_or_path, export_dir, export_size)

Formats:
  hf    the adapter merged into the base (LoRA, rsLoRA, DoRA, IA3), as a Hugging Face folder
  peft  the adapter alone, in PEFT's layout
  gguf  model.gguf of the merged model; with --gguf-adapter the base's model.gguf plus adapter.gguf

--out is written into a temporary folder beside it and renamed into place when complete.
With --quantization-bit the base is rounded through the quantized format a QLoRA adapter
was trained on before merging: the result equals the trained QLoRA model, and carries the
quantization's rounding in every projection. The base may also be given as the one
positional argument; arguments and flags may come in any order.`, args, stdout, stderr)
	var o export.Options
	fs.StringVar(&o.Model, "model", "", "base model folder (Hugging Face layout) or Hub repo id")
	fs.StringVar(&o.Adapter, "adapter", "", "PEFT adapter folder")
	fs.StringVar(&o.Out, "out", "", "output folder to create")
	format := fs.String("format", "hf", "hf, peft or gguf")
	dtype := fs.String("dtype", "", "f32, bf16 or f16 (default: the base config's dtype for hf, the adapter's own for peft)")
	ggufType := fs.String("gguf-type", "f16", "GGUF weight type: f32, f16, bf16, q8_0, q4_0 or q4_k")
	fs.BoolVar(&o.GGUFAdapter, "gguf-adapter", false, "gguf: write the LoRA adapter as adapter.gguf instead of merging it")
	shard := fs.String("shard-size", "5GB", "hf: largest safetensors file (e.g. 5GB, 500MiB)")
	fs.BoolVar(&o.Modelfile, "modelfile", false, "gguf: also write an Ollama Modelfile")
	fs.StringVar(&o.System, "system", "", "gguf: default system prompt of the Modelfile")
	fs.StringVar(&o.Name, "name", "", "gguf: general.name (default: the --out folder's name)")
	fs.BoolVar(&o.Force, "force", false, "replace a non-empty --out that an earlier gotune export wrote (it holds "+export.MarkerFile+"); any other folder is refused")
	qbit := fs.Int("quantization-bit", 0, "merge onto the base as QLoRA trained it: 4 or 8 (0: full precision)")
	qtype := fs.String("quantization-type", "nf4", "4-bit type of --quantization-bit 4: nf4 or fp4")
	dq := fs.Bool("double-quantization", true, "the base was double-quantized (as LLaMA-Factory's default)")
	if len(args) > 0 && isYAML(args[0]) {
		// LLaMA-Factory's `llamafactory-cli export merge.yaml`: the file
		// gives the starting values, flags after it override them.
		cfg, err := config.Open(args[0], nil, stderr)
		if err != nil {
			return err
		}
		if len(cfg.AdapterNameOrPath) > 1 {
			return fmt.Errorf("%s: adapter_name_or_path: merging %d adapters at once is not supported; export one at a time", args[0], len(cfg.AdapterNameOrPath))
		}
		o.Model, o.Out = cfg.ModelNameOrPath, cfg.ExportDir
		if len(cfg.AdapterNameOrPath) == 1 {
			o.Adapter = cfg.AdapterNameOrPath[0]
		}
		if cfg.ExportSize > 0 {
			*shard = fmt.Sprintf("%dGB", cfg.ExportSize)
		}
		args = args[1:]
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if o.Model, err = positionalModel(o.Model, pos); err != nil {
		return err
	}
	o.Format = export.Format(*format)
	if *dtype != "" {
		if o.DType, err = export.ParseDType(*dtype); err != nil {
			return err
		}
	}
	if o.GGUFType, err = export.ParseGGUFType(*ggufType); err != nil {
		return err
	}
	if o.ShardBytes, err = export.ParseSize(*shard); err != nil {
		return fmt.Errorf("--shard-size: %w", err)
	}
	switch *qbit {
	case 0:
	case 4:
		q := &quant.Options{Type: quant.NF4, DoubleQuant: *dq}
		switch *qtype {
		case "nf4":
		case "fp4":
			q.Type = quant.FP4
		default:
			return fmt.Errorf("--quantization-type %q: want nf4 or fp4", *qtype)
		}
		o.Quant = q
	case 8:
		o.Quant = &quant.Options{Type: quant.Int8Row}
	default:
		return fmt.Errorf("--quantization-bit %d: want 4 or 8", *qbit)
	}
	// Writing the weights shows its progress on a terminal, nothing on a pipe.
	meter := runlog.NewMeter(stderr, "writing weights", "B", 0)
	o.Progress = func(done, total int64) { meter.Set(done, total) }
	o.Log = meter.Writer(stderr)
	if o.Model != "" {
		var err error
		if o.Model, err = modelPath(o.Model); err != nil {
			return err
		}
	}
	res, err := export.Run(o)
	meter.Done()
	if err != nil {
		return err
	}
	what := "model"
	if res.Merged != "" {
		what = "model with the " + res.Merged + " adapter merged"
	}
	if o.Format == export.PEFT {
		what = "adapter"
	}
	fmt.Fprintf(stdout, "wrote %s to %s:\n", what, res.Out)
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	return nil
}

func isYAML(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return true
	}
	return false
}
