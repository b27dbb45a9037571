package ui

import (
	"encoding/json"
	"errors"
	"gotune/hfconfig"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// within reports whether p is root or inside it.
func within(p, root string) bool {
	if p == root {
		return true
	}
	return strings.HasPrefix(p, strings.TrimSuffix(root, string(filepath.Separator))+string(filepath.Separator))
}

// resolve makes p absolute (relative paths are taken from the first root),
// follows symbolic links of its existing part, and checks the result lies
// under an allowed root; write also excludes the read-only folders. A path
// that does not exist yet is judged by its nearest existing parent, so a
// link cannot lead a new output folder out of the roots.
func (s *Server) resolve(p string, write bool) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", badRequest("empty path")
	}
	if strings.ContainsRune(p, 0) {
		return "", badRequest("path contains a NUL byte")
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.roots[0], p)
	}
	p = filepath.Clean(p)
	real, err := evalExisting(p)
	if err != nil {
		return "", badRequest("%s: %v", p, err)
	}
	for _, r := range s.roots {
		if within(real, r) {
			return real, nil
		}
	}
	if !write {
		for _, r := range s.readOnly {
			if within(real, r) {
				return real, nil
			}
		}
	}
	return "", forbidden("%s is outside the folders this UI may use (%s); start gotune ui with --root to allow it", p, strings.Join(s.roots, ", "))
}

// evalExisting resolves links in the longest existing prefix of p and
// appends the rest unchanged.
func evalExisting(p string) (string, error) {
	rest := ""
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// entry is one row of a folder listing.
type entry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Dir  bool   `json:"dir"`
	Size int64  `json:"size,omitempty"`
	Kind string `json:"kind,omitempty"` // model, dataset, dataset_info, run, adapter
}

// handleFiles lists one folder under the roots: its subfolders and the
// files a picker may want (data, configs), each tagged with what it is.
func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	dir := r.URL.Query().Get("dir")
	if dir == "" {
		dir = s.roots[0]
	}
	p, err := s.resolve(dir, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	des, err := os.ReadDir(p)
	if err != nil {
		s.fail(w, r, notFound("%v", err))
		return
	}
	out := struct {
		Dir     string  `json:"dir"`
		Parent  string  `json:"parent,omitempty"`
		Entries []entry `json:"entries"`
	}{Dir: p, Entries: []entry{}}
	if parent := filepath.Dir(p); parent != p {
		if _, err := s.resolve(parent, false); err == nil {
			out.Parent = parent
		}
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		full := filepath.Join(p, de.Name())
		e := entry{Name: de.Name(), Path: full}
		if de.IsDir() || de.Type()&fs.ModeSymlink != 0 {
			st, err := os.Stat(full)
			if err != nil || !st.IsDir() {
				continue
			}
			// A link to a folder outside the roots is not offered at all.
			if _, err := s.resolve(full, false); err != nil {
				continue
			}
			e.Dir, e.Kind = true, folderKind(full)
		} else {
			if !isDataFile(de.Name()) && !isConfigFile(de.Name()) {
				continue
			}
			if info, err := de.Info(); err == nil {
				e.Size = info.Size()
			}
			e.Kind = "dataset"
			if de.Name() == "dataset_info.json" {
				e.Kind = "dataset_info"
			} else if isConfigFile(de.Name()) {
				e.Kind = "config"
			}
		}
		out.Entries = append(out.Entries, e)
	}
	writeJSON(w, out)
}

func isDataFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json", ".jsonl", ".parquet", ".txt":
		return true
	}
	return false
}

func isConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return true
	}
	return false
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// folderKind says what a folder holds, as far as the pickers care.
func folderKind(dir string) string {
	switch {
	case exists(filepath.Join(dir, "adapter_config.json")):
		return "adapter"
	case exists(filepath.Join(dir, "trainer_log.jsonl")):
		return "run"
	case exists(filepath.Join(dir, "config.json")) && hasSafetensors(dir):
		return "model"
	}
	return ""
}

func hasSafetensors(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	return len(m) > 0
}

// walkRoots visits folders under every root (and the read-only folders) to
// depth levels, skipping hidden folders, and calls fn for each.
func (s *Server) walkRoots(depth int, fn func(dir string)) {
	seen := map[string]bool{}
	var walk func(dir string, d int)
	walk = func(dir string, d int) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		fn(dir)
		if d == 0 {
			return
		}
		des, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, de := range des {
			if de.IsDir() && !strings.HasPrefix(de.Name(), ".") {
				walk(filepath.Join(dir, de.Name()), d-1)
			}
		}
	}
	for _, r := range append(append([]string(nil), s.roots...), s.readOnly...) {
		walk(r, depth)
	}
}

type modelEntry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"` // model or adapter
	Base string `json:"base,omitempty"`
}

// handleModels lists model folders (config.json and safetensors) and PEFT
// adapters under the roots.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	out := []modelEntry{}
	s.walkRoots(4, func(dir string) {
		switch folderKind(dir) {
		case "model":
			out = append(out, modelEntry{Name: s.display(dir), Path: dir, Kind: "model"})
		case "adapter":
			e := modelEntry{Name: s.display(dir), Path: dir, Kind: "adapter"}
			// The base model is a hint for the page: an unreadable
			// config still lists the adapter.
			if ac, err := hfconfig.ReadAdapterConfig(dir); err == nil {
				e.Base = ac.BaseModel
			}
			out = append(out, e)
		}
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind > out[j].Kind })
	writeJSON(w, out)
}

type datasetEntry struct {
	Name       string `json:"name"`
	Dataset    string `json:"dataset"`     // the value for the config's dataset key
	DatasetDir string `json:"dataset_dir"` // the value for dataset_dir
	Path       string `json:"path"`
	File       string `json:"file,omitempty"` // the data file, when it is one file the page can edit
	Kind       string `json:"kind"`           // "info" (a dataset_info.json entry) or "file"
}

// handleDatasets lists dataset_info.json entries and loose data files.
func (s *Server) handleDatasets(w http.ResponseWriter, r *http.Request) {
	out := []datasetEntry{}
	s.walkRoots(3, func(dir string) {
		infoPath := filepath.Join(dir, "dataset_info.json")
		if b, err := os.ReadFile(infoPath); err == nil {
			var info map[string]json.RawMessage
			if json.Unmarshal(b, &info) == nil {
				names := make([]string, 0, len(info))
				for n := range info {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					out = append(out, datasetEntry{Name: n + " (" + s.display(dir) + ")", Dataset: n, DatasetDir: dir, Path: infoPath,
						File: datasetFile(dir, info[n]), Kind: "info"})
				}
			}
		}
		des, _ := os.ReadDir(dir)
		for _, de := range des {
			if de.IsDir() || !isDataFile(de.Name()) || de.Name() == "dataset_info.json" || strings.HasPrefix(de.Name(), ".") {
				continue
			}
			// Run folders hold JSON of their own (trainer_state.json, reports).
			if folderKind(dir) != "" {
				continue
			}
			p := filepath.Join(dir, de.Name())
			out = append(out, datasetEntry{Name: s.display(p), Dataset: p, DatasetDir: dir, Path: p, File: p, Kind: "file"})
		}
	})
	writeJSON(w, out)
}

// display shortens a path to root-relative form for labels.
func (s *Server) display(p string) string {
	for _, r := range s.roots {
		if rel, err := filepath.Rel(r, p); err == nil && within(p, r) {
			if rel == "." {
				return filepath.Base(p)
			}
			return rel
		}
	}
	for _, r := range s.readOnly {
		if within(p, r) {
			if name := hubName(p); name != "" {
				return name
			}
			return "bundled/" + filepath.Base(p)
		}
	}
	return p
}

// hubName labels a snapshot in a Hugging Face cache
// (…/models--org--name/snapshots/REV) as org/name@REV; "" for other paths.
func hubName(p string) string {
	parts := strings.Split(filepath.ToSlash(p), "/")
	for i := 0; i+2 < len(parts); i++ {
		if strings.HasPrefix(parts[i], "models--") && parts[i+1] == "snapshots" {
			rev := parts[i+2]
			if len(rev) > 8 {
				rev = rev[:8]
			}
			return strings.ReplaceAll(strings.TrimPrefix(parts[i], "models--"), "--", "/") + "@" + rev
		}
	}
	return ""
}
