package gguf

import (
	"path/filepath"
	"testing"

	"gotune/assets"
)

// Options.Progress follows the conversion tensor by tensor up to the total
// (issue 13.8: export shows its progress).
func TestFromHFProgress(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var last, total int64
	opt := Options{Type: Q8_0, Progress: func(done, tot int64) {
		calls++
		if done <= last || done > tot || (total != 0 && tot != total) {
			t.Errorf("progress %d/%d after %d", done, tot, last)
		}
		last, total = done, tot
	}}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := FromHF(dir, path, opt); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := len(f.Tensors()); calls != n || last != total || total == 0 {
		t.Errorf("%d progress calls for %d tensors, ending at %d of %d", calls, n, last, total)
	}
}
