package model

// SetAttnBudget lets the external tests force the chunked attention path
// (one sequence's scores at a time).
func SetAttnBudget(dm *DeviceModel, floats int) { dm.attnBudget = floats }
