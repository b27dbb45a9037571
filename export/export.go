// Package export writes what training produced in the forms other tools
// load: a Hugging Face model folder with the adapter merged into the weights
// (transformers, vLLM), the adapter alone in PEFT's layout, or a GGUF file
// (llama.cpp, Ollama) of the merged model or of the base plus a LoRA adapter,
// optionally with an Ollama Modelfile.
//
// An export never leaves a half-written folder: everything is written into a
// temporary folder next to the destination, synced, and renamed into place.
//
// Merging onto a quantized base (QLoRA): with Options.Quant set, the base's
// linear weights are first quantized as training quantized them and then
// expanded back to float32, and the adapter is added to those values. The
// merged weights are therefore the dequantized NF4 (or FP4/INT8) values plus
// the update, not the original full-precision weights plus the update: the
// exported model computes exactly what the quantized model with its adapter
// computed during training, and carries the quantization's rounding error
// into every projection (also those the adapter does not touch). Without
// Options.Quant the adapter is merged onto the full-precision base, as PEFT's
// merge_and_unload does for an unquantized model; that model differs from the
// trained QLoRA model by the same rounding error, in the other direction.
package export

import (
	"errors"
	"fmt"
	"gotune/safefile"
	"io"
	"os"
	"path/filepath"

	"gotune/gguf"
	"gotune/quant"
	"gotune/safetensors"
)

// Format is what an export writes.
type Format string

const (
	// HF is a Hugging Face model folder: safetensors weights (sharded with an
	// index above the shard size), config.json, generation_config.json,
	// tokenizer files and chat template.
	HF Format = "hf"
	// PEFT is the adapter alone: adapter_config.json and
	// adapter_model.safetensors.
	PEFT Format = "peft"
	// GGUF is model.gguf (the merged model, or the base when
	// Options.GGUFAdapter is set, with adapter.gguf beside it).
	GGUF Format = "gguf"
)

// Options describe one export.
type Options struct {
	// Model is the base model folder (Hugging Face layout).
	Model string
	// Adapter is a PEFT adapter folder; empty exports the base alone.
	Adapter string
	// Out is the folder to create.
	Out    string
	Format Format
	// DType of the written safetensors: F32, BF16 or F16. Empty means the
	// base config's dtype for HF (float32 when it names none) and the
	// adapter's own dtypes for PEFT.
	DType safetensors.DType
	// ShardBytes is the largest weights file for HF (0: 5 GB).
	ShardBytes int64
	// GGUFType is the type of GGUF 2-D weights (F32, F16, BF16, Q8_0, Q4_0,
	// Q4_K); the zero value is F32. A GGUF adapter is written F32 when this
	// is F32 and F16 otherwise.
	GGUFType gguf.TensorType
	// GGUFAdapter writes the LoRA adapter as adapter.gguf beside the base
	// model.gguf instead of merging it.
	GGUFAdapter bool
	// Modelfile writes an Ollama Modelfile next to the GGUF file(s).
	Modelfile bool
	// System is the Modelfile's default system prompt (optional).
	System string
	// Name is general.name of GGUF files; Out's folder name when empty.
	Name string
	// Force replaces a non-empty Out, but only one that an earlier export
	// wrote (it holds MarkerFile): a mistyped --out such as a source folder
	// must never be deleted.
	Force bool
	// Quant, when set, reproduces the quantized base a QLoRA adapter was
	// trained on before merging (see the package documentation).
	Quant *quant.Options
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Progress, when set, receives the bytes of weights written so far out
	// of the total (HF weights, or the tensors of model.gguf).
	Progress func(done, total int64)
}

// Result lists what an export wrote.
type Result struct {
	Out string
	// Files are the names written, relative to Out.
	Files []string
	// Merged is the peft_type merged into the weights, "" when none.
	Merged string
}

// Run performs an export.
func Run(opt Options) (*Result, error) {
	if err := opt.check(); err != nil {
		return nil, err
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	tmp, err := prepareOut(opt.Out, opt.Force)
	if err != nil {
		return nil, err
	}
	res := &Result{Out: opt.Out}
	err = func() error {
		switch opt.Format {
		case HF:
			return writeHF(tmp, opt, res)
		case PEFT:
			return writePEFT(tmp, opt, res)
		default:
			return writeGGUF(tmp, opt, res)
		}
	}()
	if err == nil {
		res.Files, err = listFiles(tmp)
	}
	if err == nil {
		err = writeMarker(tmp, opt.Format)
	}
	if err == nil {
		err = commitOut(tmp, opt.Out)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return res, nil
}

func (o *Options) check() error {
	if o.Out == "" {
		return errors.New("export: the output folder (--out) is required")
	}
	if o.Format == "" {
		o.Format = HF
	}
	switch o.Format {
	case HF, GGUF:
		if o.Model == "" {
			return fmt.Errorf("export: format %s needs the base model folder (--model)", o.Format)
		}
	case PEFT:
		if o.Adapter == "" {
			return errors.New("export: format peft needs an adapter folder (--adapter)")
		}
	default:
		return fmt.Errorf("export: format %q is not supported (hf, peft, gguf)", o.Format)
	}
	if o.GGUFAdapter && (o.Format != GGUF || o.Adapter == "") {
		return errors.New("export: a GGUF adapter needs --format gguf and --adapter")
	}
	if o.Quant != nil && (o.Format == PEFT || o.Adapter == "" || o.GGUFAdapter) {
		return errors.New("export: quantization settings apply only when merging an adapter (--format hf or gguf without --gguf-adapter)")
	}
	if o.Modelfile && o.Format != GGUF {
		return errors.New("export: --modelfile needs --format gguf")
	}
	switch o.DType {
	case "", safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		return fmt.Errorf("export: dtype %s is not supported (F32, BF16, F16)", o.DType)
	}
	if o.ShardBytes < 0 {
		return fmt.Errorf("export: shard size %d must be positive", o.ShardBytes)
	}
	for _, p := range []string{o.Model, o.Adapter} {
		if p == "" {
			continue
		}
		if abs(p) == abs(o.Out) {
			return fmt.Errorf("export: the output folder %s is also an input", o.Out)
		}
		if fi, err := os.Stat(p); err != nil {
			return fmt.Errorf("export: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("export: %s is not a folder", p)
		}
	}
	return nil
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	return a
}

// MarkerFile is written into every export folder. Options.Force replaces
// only folders that hold it, so that it can never delete a folder gotune did
// not write.
const MarkerFile = ".gotune-export"

func writeMarker(dir string, f Format) error {
	b := fmt.Appendf(nil, "{\"written_by\": \"gotune export\", \"format\": %q}\n", f)
	return writeFileSync(filepath.Join(dir, MarkerFile), b)
}

// prepareOut checks that out may be written and creates the temporary folder
// next to it that the export fills.
func prepareOut(out string, force bool) (string, error) {
	fi, err := os.Stat(out)
	switch {
	case err == nil && !fi.IsDir():
		return "", fmt.Errorf("export: %s exists and is not a folder", out)
	case err == nil:
		ents, err := os.ReadDir(out)
		if err != nil {
			return "", fmt.Errorf("export: %w", err)
		}
		if len(ents) == 0 {
			break
		}
		if !force {
			return "", fmt.Errorf("export: %s is not empty; choose another --out or pass --force to replace an earlier export", out)
		}
		if m, err := os.Lstat(filepath.Join(out, MarkerFile)); err != nil || !m.Mode().IsRegular() {
			return "", fmt.Errorf("export: --force replaces only a folder that gotune export wrote (one holding %s); %s is not one, so it is left alone: choose another --out or remove it yourself", MarkerFile, out)
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("export: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(out))+".tmp-")
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	if err := os.Chmod(tmp, safefile.DirPerm()); err != nil { // MkdirTemp made it 0700
		os.RemoveAll(tmp)
		return "", fmt.Errorf("export: %w", err)
	}
	return tmp, nil
}

// commitOut moves the finished temporary folder into place. An existing out
// (empty, or replaced under --force) is moved aside first and removed only
// after the rename succeeded.
func commitOut(tmp, out string) error {
	if err := syncDir(tmp); err != nil {
		return err
	}
	var old string
	if _, err := os.Stat(out); err == nil {
		old = tmp + ".old"
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("export: move %s aside: %w", out, err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			os.Rename(old, out)
		}
		return fmt.Errorf("export: %w", err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return syncDir(filepath.Dir(filepath.Clean(out)))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	// Some file systems cannot sync a directory; the rename is still atomic.
	f.Sync()
	return nil
}

func listFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// writeFileSync writes a file inside the temporary folder and syncs it (the
// folder's rename is what makes the export atomic).
func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
