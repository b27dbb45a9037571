package data

import (
	"os"
	"testing"
)

// Config.Progress follows reading the dataset files byte by byte, up to
// their whole size, and changes nothing in the result (issue 13.8).
func TestInspectProgress(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	var total int64
	for _, s := range cfg.Datasets {
		files, err := DataFiles(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
		}
	}
	plain, err := Inspect(cfg, testEncoder(cfg.Encode), InspectOptions{Samples: -1})
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var last int64
	cfg.Progress = func(done, tot int64) {
		calls++
		if tot != total || done < last || done > tot {
			t.Fatalf("progress %d/%d after %d; files hold %d bytes", done, tot, last, total)
		}
		last = done
	}
	rep, err := Inspect(cfg, testEncoder(cfg.Encode), InspectOptions{Samples: -1})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 10 || last != total {
		t.Errorf("%d progress calls ending at %d of %d bytes", calls, last, total)
	}
	if rep.Train != plain.Train || rep.Val != plain.Val {
		t.Errorf("with progress: %d/%d samples, without %d/%d", rep.Train, rep.Val, plain.Train, plain.Val)
	}
	k1, _ := CacheKey(cfg, nil)
	cfg.Progress = nil
	if k2, _ := CacheKey(cfg, nil); k1 != k2 {
		t.Error("Progress changes the cache key")
	}
}
