package ref

import (
	"testing"

	"gotune/compute/optest"
)

// TestFamilyOps: the reference backend's operations of the Gemma and Phi-3
// families against float64 loops.
func TestFamilyOps(t *testing.T) {
	optest.Families(t, New())
}

func TestMoE(t *testing.T) { optest.MoE(t, New()) }
