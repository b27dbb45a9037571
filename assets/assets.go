// Package assets carries the small files gotune bundles in its binary: a tiny
// model for the quickstart, so the first command needs no download.
package assets

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed models data quickstart.yaml
var files embed.FS

// DefaultModel is the name of the bundled model: the shape of Qwen3 at a
// tiny size (2 layers, hidden 64) with random weights and a real byte-level
// BPE tokenizer and chat template, small enough to fine-tune in seconds.
const DefaultModel = "tiny-qwen3"

// ModelDir extracts a bundled model into dir (or, when dir is empty, under
// Home()) and returns its path. Files already extracted with
// the same size are kept.
func ModelDir(name, dir string) (string, error) {
	return extract("models/"+name, dir)
}

// DataDir extracts the bundled quickstart dataset folder (with its
// dataset_info.json) and returns its path.
func DataDir(dir string) (string, error) { return extract("data", dir) }

// QuickstartConfig is the training configuration of `gotune quickstart`.
func QuickstartConfig() []byte {
	b, _ := files.ReadFile("quickstart.yaml")
	return b
}

func extract(src, dir string) (string, error) {
	if _, err := fs.Stat(files, src); err != nil {
		return "", fmt.Errorf("nothing bundled under %q", src)
	}
	if dir == "" {
		dir = filepath.Join(Home(), filepath.FromSlash(src))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	err := fs.WalkDir(files, src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if st, err := os.Stat(dst); err == nil && st.Size() == int64(len(data)) {
			return nil
		}
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	})
	return dir, err
}

// Home is gotune's own folder for downloads and extracted files:
// $GOTUNE_HOME, else the user's cache folder's gotune/.
func Home() string {
	if h := os.Getenv("GOTUNE_HOME"); h != "" {
		return h
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "gotune")
}
