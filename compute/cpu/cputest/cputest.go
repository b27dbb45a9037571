// Package cputest gives tests outside compute/ the CPU backend, as cudatest
// gives them a GPU, so that only the command that chooses a backend imports
// compute/cpu itself.
package cputest

import (
	"gotune/compute"
	"gotune/compute/cpu"
)

// Open returns a fresh CPU backend.
func Open() compute.Backend { return cpu.Open() }
