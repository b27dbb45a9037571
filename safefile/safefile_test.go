package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.safetensors")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	// Without O_NONBLOCK the open itself would block forever.
	if _, err := ReadFile(fifo); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := ReadFile(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := ReadFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "device") {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(dir, "ok.json")
	os.WriteFile(p, []byte(`{"a": 1}`), 0o644)
	link := filepath.Join(dir, "link.json")
	os.Symlink(p, link)
	for _, path := range []string{p, link} {
		if b, err := ReadFile(path); err != nil || string(b) != `{"a": 1}` {
			t.Errorf("%s: %q %v", path, b, err)
		}
	}
}
