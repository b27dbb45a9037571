// Package ckpt writes training checkpoints so that a crash at any moment
// leaves the previous checkpoint loadable: everything is written under a
// temporary name, synced, and renamed into place.
package ckpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"gotune/jsondepth"
	"gotune/safefile"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory, so
// readers see either the old or the new content, never a torn file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(safefile.Masked(perm)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteJSONAtomic writes v as indented JSON with WriteFileAtomic.
func WriteJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: encode JSON: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// ReadJSON decodes the JSON file at path into v, rejecting unknown fields and
// trailing data so a damaged or foreign file is reported rather than half-read.
func ReadJSON(path string, v any) error {
	b, err := safefile.ReadFile(path)
	if err != nil {
		return err
	}
	if err := jsondepth.Check(b, jsondepth.Default); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %s", path, describeJSONError(b, err))
	}
	if dec.More() {
		return fmt.Errorf("%s: unexpected data after the JSON value", path)
	}
	return nil
}

// describeJSONError adds the line number to encoding/json's byte offsets.
func describeJSONError(b []byte, err error) string {
	var off int64 = -1
	switch e := err.(type) {
	case *json.SyntaxError:
		off = e.Offset
	case *json.UnmarshalTypeError:
		off = e.Offset
		if e.Field != "" {
			return fmt.Sprintf("line %d: field %q: expected %s, got JSON %s", lineAt(b, off), e.Field, e.Type, e.Value)
		}
	}
	if off >= 0 {
		return fmt.Sprintf("line %d: %v", lineAt(b, off), err)
	}
	return err.Error()
}

func lineAt(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	return 1 + bytes.Count(b[:off], []byte{'\n'})
}

// SyncDir fsyncs a directory so that entries created or renamed in it survive
// a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
