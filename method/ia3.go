package method

import (
	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
)

// ia3 rescales keys, values and the feed-forward input by trained vectors.
var ia3 = Method{
	Name:     "ia3",
	PeftType: "IA3",
	Check:    func(*config.Config, Report) {},
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		c := s.Cfg
		return attachOrLoad(s, loadIA3, func() (peft.Method, error) {
			return peft.AttachIA3(s.Model, peft.IA3Config{Targets: c.IA3Target, Feedforward: c.IA3Feedforward, BaseModel: s.ModelDir}, s.Seed())
		})
	},
	Load:    loadIA3,
	Packing: true,
}

func loadIA3(m *model.Model, dir string) (peft.Method, error) { return peft.LoadIA3(m, dir) }
