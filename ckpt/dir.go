package ckpt

import (
	"errors"
	"fmt"
	"gotune/safefile"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ManifestFile is written last into every checkpoint directory. A directory
// without it (or whose files no longer match it) is incomplete and ignored.
const ManifestFile = "gotune_manifest.json"

// Prefix is the name prefix of step checkpoints: "checkpoint-<step>", as the
// Hugging Face Trainer names them.
const Prefix = "checkpoint"

// ErrNoCheckpoint is returned by Latest when parent holds no complete checkpoint.
var ErrNoCheckpoint = errors.New("no complete checkpoint")

// Manifest lists the files of a checkpoint with their sizes, so a directory
// damaged after the fact (a file truncated or removed) is detected.
type Manifest struct {
	Name    string              `json:"name"`
	Created time.Time           `json:"created"`
	Files   []ManifestFileEntry `json:"files"`
	// Run identifies the run that wrote the checkpoint (configuration,
	// data, model), so a resume can refuse a checkpoint of another run.
	Run map[string]string `json:"run,omitempty"`
}

// ManifestFileEntry is one file of a checkpoint, path relative to its directory.
type ManifestFileEntry struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	// CRC32C of the content: a file damaged at the same size (optimizer
	// state overwritten with NaN) is caught by VerifyContents.
	CRC32C string `json:"crc32c,omitempty"`
}

// Name returns the directory name of the checkpoint taken after step.
func Name(step int) string { return Prefix + "-" + strconv.Itoa(step) }

// WriteDir creates the directory <parent>/<name> atomically. write fills a
// fresh temporary directory <parent>/.<name>.tmp-XXXX; then every file is
// synced, the manifest is written last, and the directory is renamed into
// place. An existing <parent>/<name> is replaced: it is renamed aside, the new
// one renamed in, and only then removed, so a crash never leaves neither.
// If write fails, the temporary directory is removed and the old one kept.
func WriteDir(parent, name string, write func(tmpDir string) error) error {
	return WriteRunDir(parent, name, nil, write)
}

// WriteRunDir is WriteDir recording run (see Manifest.Run) in the manifest.
func WriteRunDir(parent, name string, run map[string]string, write func(tmpDir string) error) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("checkpoint name %q: want a plain directory name not starting with '.'", name)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+name+".tmp-")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if err := os.Chmod(tmp, safefile.DirPerm()); err != nil { // MkdirTemp made it 0700
		os.RemoveAll(tmp)
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("checkpoint %s: %w", filepath.Join(parent, name), err)
	}
	if err := write(tmp); err != nil {
		return fail(err)
	}
	files, err := syncTree(tmp)
	if err != nil {
		return fail(err)
	}
	m := Manifest{Name: name, Created: time.Now().UTC(), Files: files, Run: run}
	if err := WriteJSONAtomic(filepath.Join(tmp, ManifestFile), m); err != nil {
		return fail(err)
	}

	final := filepath.Join(parent, name)
	var old string
	if _, err := os.Lstat(final); err == nil {
		suffix := strings.TrimPrefix(filepath.Base(tmp), "."+name+".tmp-")
		old = filepath.Join(parent, "."+name+".old-"+suffix)
		if err := os.Rename(final, old); err != nil {
			return fail(fmt.Errorf("move previous version aside: %w", err))
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		if old != "" {
			os.Rename(old, final)
		}
		return fail(err)
	}
	if err := SyncDir(parent); err != nil {
		return fmt.Errorf("checkpoint %s: %w", final, err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("checkpoint %s: remove previous version: %w", final, err)
		}
	}
	return nil
}

// syncTree fsyncs every file and directory under root and lists the regular
// files with their sizes.
func syncTree(root string) ([]ManifestFileEntry, error) {
	var files []ManifestFileEntry
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		info, serr := f.Stat()
		sum, herr := fileCRC(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
		if serr != nil {
			return serr
		}
		if herr != nil {
			return fmt.Errorf("checksum %s: %w", path, herr)
		}
		rel, _ := filepath.Rel(root, path)
		files = append(files, ManifestFileEntry{Path: filepath.ToSlash(rel), Size: info.Size(), CRC32C: sum})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Children first, so each directory's entries are durable before its parent's.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := SyncDir(dirs[i]); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// Verify reports why dir is not a complete checkpoint, or nil if it is: its
// manifest must exist and every listed file must be present with its size.
func Verify(dir string) error {
	var m Manifest
	if err := ReadJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint %s is incomplete: %s is missing", dir, ManifestFile)
		}
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for _, f := range m.Files {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return fmt.Errorf("checkpoint %s is damaged: %w", dir, err)
		}
		if info.Size() != f.Size {
			return fmt.Errorf("checkpoint %s is damaged: %s has %d bytes, manifest says %d", dir, f.Path, info.Size(), f.Size)
		}
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileCRC is the CRC-32C of r's content, in hex.
func fileCRC(r io.Reader) (string, error) {
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return fmt.Sprintf("%08x", h.Sum32()), nil
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	var m Manifest
	if err := ReadJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// VerifyContents is Verify plus every file's checksum (where the manifest
// has one): it reads the whole checkpoint, so it is for resuming, not for
// listing.
func VerifyContents(dir string) error {
	if err := Verify(dir); err != nil {
		return err
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for _, f := range m.Files {
		if f.CRC32C == "" {
			continue
		}
		fh, err := safefile.Open(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return fmt.Errorf("checkpoint %s is damaged: %w", dir, err)
		}
		sum, err := fileCRC(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("checkpoint %s: %s: %w", dir, f.Path, err)
		}
		if sum != f.CRC32C {
			return fmt.Errorf("checkpoint %s is damaged: %s has checksum %s, manifest says %s", dir, f.Path, sum, f.CRC32C)
		}
	}
	return nil
}

// Clear removes every checkpoint-<step> directory under parent, complete or
// not, with the leftovers of interrupted writes, and returns how many
// checkpoints it removed. A run that starts over in a used folder calls it,
// so the old run's higher-numbered checkpoints can neither make rotation
// delete the new ones nor be picked up by a later resume.
func Clear(parent string) (int, error) {
	if err := Recover(parent); err != nil {
		return 0, err
	}
	list, err := List(parent)
	if err != nil {
		return 0, err
	}
	for _, c := range list {
		if err := removeDir(c.Path); err != nil {
			return 0, fmt.Errorf("remove old checkpoint: %w", err)
		}
	}
	return len(list), nil
}

// Checkpoint is a step checkpoint directory found under a parent.
type Checkpoint struct {
	Path     string
	Step     int
	Complete bool
}

// List returns the checkpoint-<step> directories of parent sorted by step,
// temporary directories excluded. A missing parent gives an empty list.
func List(parent string) ([]Checkpoint, error) { return list(parent, Prefix) }

func list(parent, prefix string) ([]Checkpoint, error) {
	if prefix == "" {
		prefix = Prefix
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var out []Checkpoint
	for _, e := range entries {
		step, ok := parseStep(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		path := filepath.Join(parent, e.Name())
		out = append(out, Checkpoint{Path: path, Step: step, Complete: Verify(path) == nil})
	}
	slices.SortFunc(out, func(a, b Checkpoint) int { return a.Step - b.Step })
	return out, nil
}

func parseStep(name, prefix string) (int, bool) {
	s, ok := strings.CutPrefix(name, prefix+"-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// Latest returns the complete checkpoint with the highest step under parent,
// or ErrNoCheckpoint. Temporary and incomplete directories are skipped.
func Latest(parent string) (path string, step int, err error) {
	list, err := List(parent)
	if err != nil {
		return "", 0, err
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Complete {
			return list[i].Path, list[i].Step, nil
		}
	}
	return "", 0, fmt.Errorf("%s: %w", parent, ErrNoCheckpoint)
}

// Rotate keeps the newest keep complete <prefix>-<step> checkpoints under
// parent (prefix "" means Prefix; keep <= 0
// keeps all) and deletes the older ones, plus incomplete ones older than the
// newest complete checkpoint (left over by a crash). Directories whose path or
// base name is in protect (e.g. the best model) are never deleted. A directory
// is renamed to a temporary name before removal so a crash mid-delete never
// leaves a half-deleted directory that looks like a checkpoint.
func Rotate(parent, prefix string, keep int, protect ...string) error {
	list, err := list(parent, prefix)
	if err != nil {
		return err
	}
	var complete []Checkpoint
	for _, c := range list {
		if c.Complete {
			complete = append(complete, c)
		}
	}
	isProtected := func(c Checkpoint) bool {
		for _, p := range protect {
			if p != "" && (filepath.Clean(p) == filepath.Clean(c.Path) || p == filepath.Base(c.Path)) {
				return true
			}
		}
		return false
	}
	var doomed []Checkpoint
	if keep > 0 && len(complete) > keep {
		doomed = append(doomed, complete[:len(complete)-keep]...)
	}
	if len(complete) > 0 {
		newest := complete[len(complete)-1].Step
		for _, c := range list {
			if !c.Complete && c.Step < newest {
				doomed = append(doomed, c)
			}
		}
	}
	for _, c := range doomed {
		if isProtected(c) {
			continue
		}
		if err := removeDir(c.Path); err != nil {
			return fmt.Errorf("rotate checkpoints: %w", err)
		}
	}
	return nil
}

func removeDir(path string) error {
	parent, base := filepath.Split(path)
	if parent == "" {
		parent = "."
	}
	aside, err := os.MkdirTemp(parent, "."+base+".del-")
	if err != nil {
		return err
	}
	// MkdirTemp only reserved a unique name: os.Rename refuses to replace a
	// directory, even an empty one.
	if err := os.Remove(aside); err != nil {
		return err
	}
	if err := os.Rename(path, aside); err != nil {
		return err
	}
	if err := SyncDir(parent); err != nil {
		return err
	}
	return os.RemoveAll(aside)
}

// Recover tidies parent after a crash: a checkpoint moved aside by WriteDir
// whose replacement never arrived is moved back, and leftover temporary,
// moved-aside and half-deleted directories (and WriteFileAtomic's temporary
// files) are removed. Call it before Latest
// when resuming; it must not run while another process writes into parent.
func Recover(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("recover checkpoints: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(parent, name)
		switch orig, kind := splitTemp(name); kind {
		case "old":
			if !e.IsDir() {
				continue
			}
			final := filepath.Join(parent, orig)
			if _, err := os.Lstat(final); errors.Is(err, fs.ErrNotExist) && Verify(path) == nil {
				if err := os.Rename(path, final); err != nil {
					return fmt.Errorf("recover checkpoints: restore %s: %w", final, err)
				}
				continue
			}
			fallthrough
		case "tmp", "del":
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("recover checkpoints: %w", err)
			}
		}
	}
	return SyncDir(parent)
}

// splitTemp parses ".<name>.<kind>-XXXX" into name and kind.
func splitTemp(entry string) (name, kind string) {
	s := strings.TrimPrefix(entry, ".")
	dash := strings.LastIndexByte(s, '-')
	if dash < 0 {
		return "", ""
	}
	dot := strings.LastIndexByte(s[:dash], '.')
	if dot <= 0 {
		return "", ""
	}
	kind = s[dot+1 : dash]
	switch kind {
	case "tmp", "old", "del":
		return s[:dot], kind
	}
	return "", ""
}
