// Package cudatest opens a GPU for tests, or skips them where there is none.
package cudatest

import (
	"errors"
	"os"
	"testing"

	"gotune/compute/cuda"
)

// Open opens GPU 0 with a kernel cache in the test's temporary folder, or
// skips the test when the machine has no usable GPU (CI and development
// machines). GOTUNE_REQUIRE_GPU=1 (the GPU check script) makes that a
// failure instead.
func Open(t testing.TB) *cuda.Device {
	t.Helper()
	d, err := cuda.Open(cuda.Options{CacheDir: t.TempDir()})
	if err != nil {
		var missing *cuda.MissingLibraryError
		var cerr *cuda.Error
		if os.Getenv("GOTUNE_REQUIRE_GPU") == "" && (errors.As(err, &missing) || errors.As(err, &cerr)) {
			t.Skipf("no usable GPU: %v", err)
		}
		t.Fatal(err)
	}
	return d
}
