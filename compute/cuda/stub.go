//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"errors"

	"gotune/compute"
)

// Device is unavailable on this platform.
type Device struct{ compute.Backend }

// Options configure Open.
type Options struct {
	Ordinal  int
	CacheDir string
}

// Open reports that CUDA is supported on Linux only.
func Open(Options) (*Device, error) {
	return nil, errors.New("cuda: the GPU backend needs Linux on amd64 or arm64")
}

// Error is a failed CUDA call.
type Error struct{ Call string }

func (e *Error) Error() string { return "cuda: " + e.Call + " failed" }
