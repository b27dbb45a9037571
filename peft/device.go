package peft

import (
	"gotune/compute"
	"gotune/model"
	"gotune/nn"
)

// What the device path (model.DeviceModel) needs from the methods that are
// not adapters on a linear layer: the trained input and dense layers of a
// prompt encoder, and a bottleneck adapter's weights.

// DeviceEncoder implements model.PromptEncoder: the virtual tokens
// themselves, no encoder.
func (p *PromptTuning) DeviceEncoder() (*nn.Param, []model.Dense, compute.Activation, string) {
	return p.Embedding, nil, 0, ""
}

// DeviceEncoder implements model.PromptEncoder: the MLP head's layers with
// ReLU between them (after the LSTM for the LSTM type, see DeviceLSTM), or
// the virtual tokens alone when loaded without an encoder.
func (p *PTuning) DeviceEncoder() (*nn.Param, []model.Dense, compute.Activation, string) {
	return p.Embedding, denseLayers(p.mlp), reluAct.kind, ""
}

// DeviceLSTM implements model.LSTMEncoder: the LSTM before the MLP head of
// encoder_reparameterization_type LSTM (no layers for the MLP type).
func (p *PTuning) DeviceLSTM() (int, [][2]model.LSTMWeights) {
	if p.lstm == nil {
		return 0, nil
	}
	var out [][2]model.LSTMWeights
	for _, ly := range p.lstm.layers {
		var w [2]model.LSTMWeights
		for d, dd := range ly.dir {
			w[d] = model.LSTMWeights{Wih: dd.Wih, Whh: dd.Whh, Bih: dd.Bih, Bhh: dd.Bhh}
		}
		out = append(out, w)
	}
	return p.lstm.hidden, out
}

// DeviceEncoder implements model.PromptEncoder: the prefix itself, or with
// prefix_projection the two-layer tanh encoder that produces it.
func (p *Prefix) DeviceEncoder() (*nn.Param, []model.Dense, compute.Activation, string) {
	return p.Embedding, denseLayers(p.transform), tanhAct.kind, ""
}

func denseLayers(ds []*dense) []model.Dense {
	var out []model.Dense
	for _, d := range ds {
		out = append(out, model.Dense{W: d.W, B: d.B})
	}
	return out
}

// DeviceBottleneck implements model.BottleneckHook.
func (b *Bottleneck) DeviceBottleneck() (down, downBias, up, upBias *nn.Param, scale float32, act compute.Activation) {
	return b.Down, b.DownBias, b.Up, b.UpBias, b.Scale, b.act
}

var (
	_ model.PromptEncoder  = (*PromptTuning)(nil)
	_ model.PromptEncoder  = (*PTuning)(nil)
	_ model.PromptEncoder  = (*Prefix)(nil)
	_ model.LSTMEncoder    = (*PTuning)(nil)
	_ model.BottleneckHook = (*Bottleneck)(nil)
)
