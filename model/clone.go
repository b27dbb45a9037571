package model

import "gotune/nn"

// Clone returns a model that shares every weight with m (the same
// parameters and linear weights in whatever form) but has its own module
// structs and caches, with no PEFT method attached: one base model in
// memory can then serve several adapters, or several concurrent replicas.
// Weights must not be modified while clones exist (merging or training a
// base weight changes it for all of them).
func (m *Model) Clone() *Model {
	c := *m
	c.ropes, c.local = nil, nil
	c.Input = nil
	c.Layers = make([]*Layer, len(m.Layers))
	for i, l := range m.Layers {
		nl := *l
		nl.Prefix, nl.AttnOut, nl.MLPOut = nil, nil, nil
		for _, p := range []**nn.Linear{&nl.Q, &nl.K, &nl.V, &nl.O, &nl.Gate, &nl.Up, &nl.Down, &nl.QKV, &nl.GateUp} {
			if *p == nil {
				continue
			}
			lin := **p
			lin.Adapter = nil
			*p = &lin
		}
		if l.MoE != nil {
			moe := &MoE{Router: l.MoE.Router}
			for _, e := range l.MoE.Experts {
				ne := &Expert{}
				for _, p := range [][2]**nn.Linear{{&ne.Gate, &e.Gate}, {&ne.Up, &e.Up}, {&ne.Down, &e.Down}} {
					lin := **p[1]
					lin.Adapter = nil
					*p[0] = &lin
				}
				moe.Experts = append(moe.Experts, ne)
			}
			nl.MoE = moe
		}
		c.Layers[i] = &nl
	}
	return &c
}
