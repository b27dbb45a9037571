package method

import (
	"gotune/config"
	"gotune/nn"
	"gotune/peft"
)

// full trains every weight of the model.
var full = Method{
	Name: "full",
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		var ps []*nn.Param
		for _, p := range s.Model.Params() {
			p.SetTrainable(true)
			ps = append(ps, p)
		}
		return nil, ps, nil
	},
	Packing: true,
	Check:   func(*config.Config, Report) {},
}
