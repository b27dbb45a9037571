package parity

import (
	"os"
	"path/filepath"
	"testing"
)

func refDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "testdata", "reference", name)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("reference data %s absent (needs ../shared beside the repository)", dir)
	}
	return dir
}

func TestReferenceModels(t *testing.T) {
	for _, name := range []string{"qwen3", "llama", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			r, err := Open(refDir(t, name))
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Forward()
			if err != nil {
				t.Fatal(err)
			}
			gen, err := r.Generate()
			if err != nil {
				t.Fatal(err)
			}
			res = append(res, gen...)
			g, err := r.GradsFull()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range append(res, g...) {
				t.Logf("%s %s=%.3g %s", x.Check, x.Metric, x.Value, x.Detail)
				if !x.Pass {
					t.Errorf("%s: %s %.3g > %.3g %s", x.Check, x.Metric, x.Value, x.Limit, x.Detail)
				}
			}
		})
	}
}
