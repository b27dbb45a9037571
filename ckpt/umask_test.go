package ckpt

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOutputsHonourUmask: checkpoints were written 0700 (directories, from
// MkdirTemp) and files kept exactly the mode asked, whatever the umask.
func TestOutputsHonourUmask(t *testing.T) {
	mask := os.FileMode(syscall.Umask(0o022))
	syscall.Umask(int(mask))
	if mask == 0 {
		t.Skip("umask 0: nothing to honour")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := WriteFileAtomic(p, []byte("{}"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dir, "checkpoint-1", func(tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "x"), nil, 0o666)
	}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{p: 0o666 &^ mask, filepath.Join(dir, "checkpoint-1"): 0o777 &^ mask} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v (umask %03o)", filepath.Base(path), got, want, mask)
		}
	}
}
