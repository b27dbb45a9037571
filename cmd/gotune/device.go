package main

import (
	"fmt"

	"gotune/compute"
	"gotune/compute/cuda"
)

// openBackend is the one place that chooses a compute backend by name.
// The returned function releases it.
func openBackend(name string) (compute.Backend, func(), error) {
	switch name {
	case "cuda", "gpu":
		d, err := cuda.Open(cuda.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("--device %s: %w", name, err)
		}
		return d, func() {}, nil
	}
	return nil, nil, fmt.Errorf("--device %q: want cpu or cuda", name)
}
