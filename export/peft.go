package export

import (
	"fmt"
	"gotune/method"
	"gotune/safefile"
	"os"
	"path/filepath"

	"gotune/model"
	"gotune/peft"
	"gotune/safetensors"
)

// writePEFT copies the adapter in PEFT's layout, converting its floating
// point tensors to opt.DType when set. With a base model given, the adapter
// is first attached to it, so an adapter that does not fit its base fails
// here rather than in the tool that loads the export.
func writePEFT(dir string, opt Options, res *Result) error {
	src := opt.Adapter
	if _, err := peft.PeftType(src); err != nil {
		return err
	}
	weights := filepath.Join(src, "adapter_model.safetensors")
	if _, err := os.Stat(weights); err != nil {
		if _, berr := os.Stat(filepath.Join(src, "adapter_model.bin")); berr == nil {
			return fmt.Errorf("%s: adapter_model.bin is a pickle file, which gotune never loads; save the adapter as safetensors", src)
		}
		return fmt.Errorf("export: %w", err)
	}
	if opt.Model != "" {
		m, err := model.Load(opt.Model, model.LoadOptions{Storage: model.F32})
		if err != nil {
			return err
		}
		meth, err := method.Load(m, src)
		if err != nil {
			return err
		}
		meth.Detach()
	}
	set, err := safetensors.OpenOne(weights)
	if err != nil {
		return err
	}
	defer set.Close()
	var ts []safetensors.Tensor
	for _, name := range set.Names() {
		b, info, err := set.Bytes(name)
		if err != nil {
			return err
		}
		t := safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: b}
		if isFloat(info.DType) && opt.DType != "" && opt.DType != info.DType {
			v, _, err := set.Float32s(name)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", weights, name, err)
			}
			t.DType, t.Data = opt.DType, encode(v, opt.DType)
		}
		ts = append(ts, t)
	}
	meta := map[string]string{"format": "pt"}
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), ts, meta); err != nil {
		return err
	}
	for _, name := range []string{"adapter_config.json", "README.md"} {
		b, err := safefile.ReadFile(filepath.Join(src, name))
		if err != nil {
			if name == "README.md" {
				continue
			}
			return err
		}
		if err := writeFileSync(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return model.CopyTokenizerFiles(src, dir)
}

func isFloat(d safetensors.DType) bool {
	switch d {
	case safetensors.F64, safetensors.F32, safetensors.BF16, safetensors.F16:
		return true
	}
	return false
}

func encode(v []float32, d safetensors.DType) []byte {
	switch d {
	case safetensors.BF16:
		return safetensors.EncodeBF16(v)
	case safetensors.F16:
		return safetensors.EncodeF16(v)
	}
	return safetensors.EncodeF32(v)
}
