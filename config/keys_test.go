package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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
	for _, idx := range fieldIndex() {
		f := ct.FieldByIndex(idx)
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

// TestLLaMAFactoryExamplesLoad: configs with the keys of LLaMA-Factory's
// examples (testdata/examples: a text LoRA run, a vision one, a KTO one)
// load without an unknown-key error and validate.
func TestLLaMAFactoryExamplesLoad(t *testing.T) {
	for _, tc := range []struct{ file, validate string }{
		{"text_lora.yaml", ""},
		{"vision_lora.yaml", ""},
		{"kto_lora.yaml", ""},
	} {
		c, err := Open(filepath.Join("testdata", "examples", tc.file), nil, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		err = c.Validate()
		switch {
		case tc.validate == "" && err != nil:
			t.Errorf("%s: Validate: %v", tc.file, err)
		case tc.validate != "" && (err == nil || !strings.Contains(err.Error(), tc.validate)):
			t.Errorf("%s: Validate: %v, want %q", tc.file, err, tc.validate)
		}
	}
}
