package model

// SetAttnBudget lets the external tests force the chunked attention path
// (one sequence's scores at a time).
func SetAttnBudget(dm *DeviceModel, floats int) { dm.attnBudget = floats }

// FamilyConfig is the config.json of a small test model of a family beyond
// the Llama kind (familyConfigs), for the external tests.
func FamilyConfig(name string) (string, bool) {
	js, ok := familyConfigs[name]
	return js, ok
}
