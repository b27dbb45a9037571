package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The checked-in assembly must be what the generator writes.
func TestGeneratedFilesUpToDate(t *testing.T) {
	for _, k := range kernels {
		want := k.generate()
		got, err := os.ReadFile(filepath.Join("..", "..", k.file))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s is stale: run go generate in compute/cpu", k.file)
		}
	}
}
