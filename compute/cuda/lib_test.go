//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"strings"
	"testing"
)

// A library that is nowhere gives an error naming it, the folders searched
// and how to install it.
func TestMissingLibrary(t *testing.T) {
	t.Setenv("LD_LIBRARY_PATH", t.TempDir())
	l := library{what: "the frobnicator", sonames: []string{"libfrob.so.9"}, globs: []string{"libfrob.so.*"}, install: "apt-get install libfrob9"}
	_, _, err := l.open(dlopen)
	var m *MissingLibraryError
	if !errors.As(err, &m) {
		t.Fatalf("got %v, want a MissingLibraryError", err)
	}
	for _, want := range []string{"the frobnicator", "libfrob.so.9", "apt-get install libfrob9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Folders named in LD_LIBRARY_PATH and the Python wheels' layout are searched.
func TestSearchDirs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LD_LIBRARY_PATH", dir+":/nonexistent")
	dirs := searchDirs()
	if len(dirs) == 0 || dirs[0] != dir {
		t.Fatalf("search starts with %v, want %s first", dirs, dir)
	}
}
