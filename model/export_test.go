package model

import (
	"testing"

	"gotune/nn"
)

// SetAttnBudget lets the external tests force the chunked attention path
// (one sequence's scores at a time).
func SetAttnBudget(dm *DeviceModel, floats int) { dm.attnBudget = floats }

// FamilyConfig is the config.json of a small test model of a family beyond
// the Llama kind (familyConfigs), for the external tests.
func FamilyConfig(name string) (string, bool) {
	js, ok := familyConfigs[name]
	return js, ok
}

// RefStep is one f32 step of b on the reference backend: the loss, the
// trained tokens and each trainable parameter's gradient (for the external
// tests' oracles).
func RefStep(t testing.TB, m *Model, b *Batch, scale float32) (float64, int, map[*nn.Param][]float32) {
	t.Helper()
	return refStep(t, m, b, scale)
}

// DeviceLogits is the logits of every position of b on dm.
func DeviceLogits(t testing.TB, dm *DeviceModel, b *Batch) []float32 {
	t.Helper()
	return deviceLogits(t, dm, b)
}
