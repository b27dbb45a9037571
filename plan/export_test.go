package plan

import "gotune/model"

// MoEHeld is, for the external tests, the expert weights a mixture of
// experts holds beyond its dense formula.
func MoEHeld(c *model.Config) int64 { return shapeOf(c).moeHeld }
