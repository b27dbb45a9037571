package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"gotune/safefile"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"gotune/nn"
	"gotune/safetensors"
)

// SaveOptions control how weights are written.
type SaveOptions struct {
	DType safetensors.DType // F32 (default), BF16 or F16
	// ShardBytes splits the weights into several files with an index when
	// they exceed it (0: 5 GB, as transformers' default max_shard_size).
	ShardBytes int64
	// Progress, when set, receives the bytes of weights encoded so far out
	// of the total, tensor by tensor.
	Progress func(done, total int64)
}

// SaveWeights writes params into dir as model.safetensors, or as
// model-0000k-of-0000n.safetensors shards with model.safetensors.index.json.
// Every file is written atomically.
func SaveWeights(dir string, params []*nn.Param, opt SaveOptions) error {
	if opt.DType == "" {
		opt.DType = safetensors.F32
	}
	if opt.ShardBytes <= 0 {
		opt.ShardBytes = 5 << 30
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var shards [][]*nn.Param
	var size, cur int64
	for _, p := range params {
		b := int64(p.Len() * opt.DType.Size())
		if len(shards) == 0 || (cur+b > opt.ShardBytes && cur > 0) {
			shards = append(shards, nil)
			cur = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], p)
		cur += b
		size += b
	}
	var encoded int64
	encode := func(p *nn.Param) (safetensors.Tensor, error) {
		t := safetensors.Tensor{Name: p.Name, DType: opt.DType, Shape: p.Shape}
		if opt.Progress != nil {
			defer func() {
				encoded += int64(p.Len() * opt.DType.Size())
				opt.Progress(encoded, size)
			}()
		}
		switch opt.DType {
		case safetensors.F32:
			t.Data = safetensors.EncodeF32(p.Data)
		case safetensors.BF16:
			t.Data = safetensors.EncodeBF16(p.Data)
		case safetensors.F16:
			t.Data = safetensors.EncodeF16(p.Data)
		default:
			return t, fmt.Errorf("save: dtype %s not supported (F32, BF16, F16)", opt.DType)
		}
		return t, nil
	}
	meta := map[string]string{"format": "pt"}
	if len(shards) == 1 {
		var ts []safetensors.Tensor
		for _, p := range shards[0] {
			t, err := encode(p)
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		return safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, meta)
	}
	weightMap := map[string]string{}
	for i, sh := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		var ts []safetensors.Tensor
		for _, p := range sh {
			t, err := encode(p)
			if err != nil {
				return err
			}
			ts = append(ts, t)
			weightMap[p.Name] = name
		}
		if err := safetensors.Write(filepath.Join(dir, name), ts, meta); err != nil {
			return err
		}
	}
	idx := map[string]any{"metadata": map[string]any{"total_size": size}, "weight_map": weightMap}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "model.safetensors.index.json"), b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		f.Sync()
		f.Close()
	}
	return os.Rename(tmp, path)
}

// LoadParams fills params from the safetensors weights of dir (checkpoints
// and full fine-tuning outputs), checking shapes.
func LoadParams(dir string, params []*nn.Param) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	for _, p := range params {
		if err := readParam(set, p); err != nil {
			return err
		}
	}
	return nil
}

var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
	"chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt"}

// CopyModelFiles copies the non-weight files of a model folder (config,
// generation config, tokenizer, chat template) so dst is a complete model.
func CopyModelFiles(src, dst string) error {
	return copyFiles(src, dst, append([]string{"config.json", "generation_config.json"}, tokenizerFiles...))
}

// CopyTokenizerFiles copies the tokenizer and chat template, as PEFT
// adapter folders carry them (never config.json, which would make the
// folder look like a full model).
func CopyTokenizerFiles(src, dst string) error { return copyFiles(src, dst, tokenizerFiles) }

func copyFiles(src, dst string, names []string) error {
	for _, n := range names {
		in, err := safefile.Open(filepath.Join(src, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		b, err := io.ReadAll(in)
		in.Close()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dst, n), b); err != nil {
			return err
		}
	}
	return nil
}
