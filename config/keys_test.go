package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyIsRead walks the Config struct and checks that each field a
// YAML key sets is read somewhere in the program (a selector c.Field in a
// non-test file), so no key is accepted and then silently ignored. Keys
// gotune takes without effect belong in ignoredKeys, where loading them
// prints a note instead.
func TestEveryKeyIsRead(t *testing.T) {
	used := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != ".." && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := n.(*ast.SelectorExpr); ok {
				used[s.Sel.Name] = true
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" {
			continue
		}
		if !used[f.Name] {
			t.Errorf("key %s (Config.%s) is accepted but never read: implement it or list it in ignoredKeys", key, f.Name)
		}
	}
}

// TestKeysWithoutImplementationRefused: keys gotune reads only to refuse
// them say so, naming file and line.
func TestKeysWithoutImplementationRefused(t *testing.T) {
	base := "model_name_or_path: m\ndataset: d\n"
	for _, tc := range []struct{ yaml, want string }{
		{"do_train: false\n", "c.yaml:3: do_train: false asks for no training"},
		{"additional_target: embed_tokens\n", "c.yaml:3: additional_target: training extra modules"},
		{"create_new_adapter: true\n", "c.yaml:3: create_new_adapter: stacking"},
	} {
		c, err := Parse([]byte(base+tc.yaml), "c.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	c, err := Parse([]byte(base+"do_train: true\nneat_packing: true\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || !c.PackingEnabled() {
		t.Errorf("do_train: true, neat_packing: true: %v, packing %v", err, c.PackingEnabled())
	}
}

// TestLLaMAFactoryExamplesLoad: the keys of LLaMA-Factory's example configs
// (a text LoRA run, a vision one, a KTO one) load without an unknown-key
// error; what they ask that gotune cannot do is refused by Validate.
func TestLLaMAFactoryExamplesLoad(t *testing.T) {
	for _, tc := range []struct{ name, body, validate string }{
		{"lora sft", "model_name_or_path: m\ntrust_remote_code: true\nstage: sft\ndo_train: true\nfinetuning_type: lora\nlora_rank: 8\nlora_target: all\ndataset: identity\ntemplate: qwen3_nothink\ncutoff_len: 2048\nmax_samples: 1000\npreprocessing_num_workers: 16\ndataloader_num_workers: 4\noutput_dir: o\nlogging_steps: 10\nsave_steps: 500\nplot_loss: true\noverwrite_output_dir: true\nsave_only_model: false\nreport_to: none\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 8\nlearning_rate: 1.0e-4\nnum_train_epochs: 3.0\nlr_scheduler_type: cosine\nwarmup_ratio: 0.1\nbf16: true\nddp_timeout: 180000000\nresume_from_checkpoint: null\n", ""},
		{"vision sft", "model_name_or_path: m\nimage_max_pixels: 262144\nvideo_max_pixels: 16384\nstage: sft\ndo_train: true\ndataset: mllm_demo\noutput_dir: o\n", ""},
		{"kto", "model_name_or_path: m\nstage: kto\ndo_train: true\npref_beta: 0.1\ndataset: kto_en_demo\noutput_dir: o\n", `stage: "kto" is not supported yet`},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		err = c.Validate()
		switch {
		case tc.validate == "" && err != nil:
			t.Errorf("%s: Validate: %v", tc.name, err)
		case tc.validate != "" && (err == nil || !strings.Contains(err.Error(), tc.validate)):
			t.Errorf("%s: Validate: %v, want %q", tc.name, err, tc.validate)
		}
	}
}
