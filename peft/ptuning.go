package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"gotune/compute"
	"gotune/model"
	"gotune/nn"
)

// PTuningConfig configures P-tuning (PEFT's PromptEncoderConfig).
type PTuningConfig struct {
	Virtual int // num_virtual_tokens
	// EncoderType is "MLP" (Linear-ReLU-Linear-ReLU-Linear, always two
	// hidden layers as in PEFT) or "LSTM" (a bidirectional LSTM of
	// EncoderLayers layers, then Linear-ReLU-Linear).
	EncoderType   string
	EncoderHidden int // encoder_hidden_size; 0 means the model's hidden size
	EncoderLayers int // encoder_num_layers (LSTM only); 0 means 2
	BaseModel     string
}

// PTuning prepends virtual tokens produced by a trained prompt encoder from
// trained input embeddings. Loaded from a PEFT folder alone (which holds only
// the encoder's output) it has no encoder, and Embedding holds the virtual
// tokens themselves, as in PEFT's inference mode. The device block trains
// the encoder (model.PromptEncoder, model.LSTMEncoder); the host runs only
// its forward pass, for the output that saving writes and loading checks.
type PTuning struct {
	Config    PTuningConfig
	Embedding *nn.Param // prompt_encoder.default.embedding.weight [Virtual, Hidden]
	mlp       []*dense  // mlp_head.0, .2 (and .4 for MLP)
	lstm      *lstm     // lstm_head (LSTM only)
	m         *model.Model
}

// AttachPTuning adds P-tuning with a freshly initialised encoder to m.
func AttachPTuning(m *model.Model, cfg PTuningConfig, seed uint64) (*PTuning, error) {
	if cfg.Virtual <= 0 {
		return nil, fmt.Errorf("p-tuning: num_virtual_tokens must be positive, got %d", cfg.Virtual)
	}
	if m.Input != nil {
		return nil, fmt.Errorf("p-tuning: the model already has virtual tokens attached")
	}
	h := m.Cfg.Hidden
	if cfg.EncoderHidden <= 0 {
		cfg.EncoderHidden = h
	}
	if cfg.EncoderLayers <= 0 {
		cfg.EncoderLayers = 2
	}
	cfg.EncoderType = strings.ToUpper(cfg.EncoderType)
	if cfg.EncoderType == "" {
		cfg.EncoderType = "MLP"
	}
	rng := rand.New(rand.NewPCG(seed, 0x7074756e))
	p := &PTuning{Config: cfg, m: m, Embedding: nn.NewParam(promptEncoderPrefix+"embedding.weight", cfg.Virtual, h)}
	for i := range p.Embedding.Data {
		p.Embedding.Data[i] = float32(rng.NormFloat64())
	}
	hid := cfg.EncoderHidden
	switch cfg.EncoderType {
	case "MLP":
		p.mlp = []*dense{
			newDense(promptEncoderPrefix+"mlp_head.0", h, hid, rng),
			newDense(promptEncoderPrefix+"mlp_head.2", hid, hid, rng),
			newDense(promptEncoderPrefix+"mlp_head.4", hid, h, rng),
		}
	case "LSTM":
		p.lstm = newLSTM(promptEncoderPrefix+"lstm_head", h, hid, cfg.EncoderLayers, rng)
		p.mlp = []*dense{
			newDense(promptEncoderPrefix+"mlp_head.0", 2*hid, 2*hid, rng),
			newDense(promptEncoderPrefix+"mlp_head.2", 2*hid, h, rng),
		}
	default:
		return nil, fmt.Errorf("p-tuning: encoder_reparameterization_type %q (MLP or LSTM)", cfg.EncoderType)
	}
	for _, q := range p.Params() {
		q.SetTrainable(true)
	}
	m.Input = p
	return p, nil
}

// LoadPTuning attaches the P-tuning adapter saved in dir. PEFT saves only
// the encoder's output; when gotune's prompt_encoder.safetensors is beside
// it the encoder is restored and training continues exactly, otherwise the
// saved virtual tokens are trained directly.
func LoadPTuning(m *model.Model, dir string) (*PTuning, error) {
	f, path, err := readPromptConfig(dir, "P_TUNING")
	if err != nil {
		return nil, err
	}
	if err := checkDims(f, path, m, m.Cfg.Hidden, m.Cfg.Heads); err != nil {
		return nil, err
	}
	if f.EncoderDropout != 0 {
		return nil, fmt.Errorf("%s: encoder_dropout %v is not supported (0)", path, f.EncoderDropout)
	}
	cfg := PTuningConfig{Virtual: f.NumVirtualTokens, EncoderType: f.EncoderType, EncoderHidden: f.EncoderHiddenSize, EncoderLayers: f.EncoderNumLayers, BaseModel: f.BaseModel}
	emb, err := readPromptEmbeddings(dir, f.NumVirtualTokens, m.Cfg.Hidden)
	if err != nil {
		return nil, err
	}
	p, err := AttachPTuning(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ok, err := loadEncoder(dir, p.Params())
	if err == nil && ok {
		err = sameOutput(dir, p.encode(), emb)
	}
	if err != nil {
		p.Detach()
		return nil, err
	}
	if !ok {
		p.dropEncoder(emb)
	}
	return p, nil
}

// dropEncoder keeps only the virtual tokens themselves, as trained values.
func (p *PTuning) dropEncoder(out []float32) {
	p.mlp, p.lstm = nil, nil
	copy(p.Embedding.Data, out)
}

// HasEncoder implements Encoded.
func (p *PTuning) HasEncoder() bool { return p.mlp != nil }

// EncoderTrainableCount implements Encoded.
func (p *PTuning) EncoderTrainableCount() int {
	h, hid, P := p.m.Cfg.Hidden, p.Config.EncoderHidden, p.Config.Virtual
	n := P * h
	if p.Config.EncoderType == "LSTM" {
		for l := 0; l < p.Config.EncoderLayers; l++ {
			in := h
			if l > 0 {
				in = 2 * hid
			}
			n += 2 * (4*hid*in + 4*hid*hid + 8*hid)
		}
		return n + 2*hid*2*hid + 2*hid + 2*hid*h + h
	}
	return n + h*hid + hid + hid*hid + hid + hid*h + h
}

// OutputLayer implements Encoded.
func (p *PTuning) OutputLayer() string {
	if p.Config.EncoderType == "LSTM" {
		return promptEncoderPrefix + "mlp_head.2"
	}
	return promptEncoderPrefix + "mlp_head.4"
}

// Output implements Encoded.
func (p *PTuning) Output() []float32 {
	if !p.HasEncoder() {
		return p.Embedding.Data
	}
	return p.encode()
}

// encode runs the encoder on the host, in float64: the virtual tokens PEFT
// saves.
func (p *PTuning) encode() []float32 {
	P := p.Config.Virtual
	x := toF64(p.Embedding.Data)
	if p.lstm != nil {
		x = p.lstm.forward(x, P)
	}
	return toF32(mlp(p.mlp, x, P, reluAct))
}

// mlp runs dense layers with act between them.
func mlp(layers []*dense, x []float64, n int, act activation) []float64 {
	for i, d := range layers {
		x = d.forward(x, n)
		if i < len(layers)-1 {
			for j, v := range x {
				x[j] = act.f(v)
			}
		}
	}
	return x
}

// Virtual implements model.InputHook.
func (p *PTuning) Virtual() int { return p.Config.Virtual }

// Type implements Method.
func (p *PTuning) Type() string { return "P_TUNING" }

// Params implements Method: the input embeddings and the encoder, named as
// PEFT's module tree holds them while training.
func (p *PTuning) Params() []*nn.Param {
	ps := []*nn.Param{p.Embedding}
	if p.lstm != nil {
		ps = append(ps, p.lstm.params()...)
	}
	for _, d := range p.mlp {
		ps = append(ps, d.W, d.B)
	}
	return ps
}

// SavedTensors implements SavedTensorer: the encoder's output.
func (p *PTuning) SavedTensors() map[string][]float32 {
	return map[string][]float32{promptEmbeddingsKey: append([]float32(nil), p.Output()...)}
}

// Detach implements Method.
func (p *PTuning) Detach() {
	if p.m != nil && p.m.Input == model.InputHook(p) {
		p.m.Input = nil
	}
}

// Save implements Method.
func (p *PTuning) Save(dir string) error {
	out := p.Output()
	var enc []*nn.Param
	if p.HasEncoder() {
		enc = p.Params()
	}
	cfg := promptJSON("P_TUNING", p.Config.BaseModel, p.m, p.Config.Virtual, p.m.Cfg.Hidden, p.m.Cfg.Heads)
	cfg["encoder_reparameterization_type"] = p.Config.EncoderType
	cfg["encoder_hidden_size"] = p.Config.EncoderHidden
	cfg["encoder_num_layers"] = p.Config.EncoderLayers
	cfg["encoder_dropout"] = 0.0
	return savePrompt(dir, out, []int{p.Config.Virtual, p.m.Cfg.Hidden}, enc, cfg)
}

// dense is a linear layer of a prompt encoder; its host forward pass is
// float64 (the encoder is tiny) and its weights float32 like every
// parameter.
type dense struct {
	W, B    *nn.Param // [out, in], [out]
	in, out int
}

// newDense creates a layer initialised as torch's nn.Linear:
// U(−1/√in, 1/√in) for weight and bias.
func newDense(name string, in, out int, rng *rand.Rand) *dense {
	d := &dense{W: nn.NewParam(name+".weight", out, in), B: nn.NewParam(name+".bias", out), in: in, out: out}
	bound := 1 / math.Sqrt(float64(in))
	for _, p := range []*nn.Param{d.W, d.B} {
		for i := range p.Data {
			p.Data[i] = float32((rng.Float64()*2 - 1) * bound)
		}
	}
	return d
}

// forward returns x·Wᵀ + b for n rows.
func (d *dense) forward(x []float64, n int) []float64 {
	y := make([]float64, n*d.out)
	for r := 0; r < n; r++ {
		xr := x[r*d.in : (r+1)*d.in]
		for o := 0; o < d.out; o++ {
			s := float64(d.B.Data[o])
			for i, w := range d.W.Data[o*d.in : (o+1)*d.in] {
				s += float64(w) * xr[i]
			}
			y[r*d.out+o] = s
		}
	}
	return y
}

// activation is an encoder's nonlinearity: f on the host (the forward
// that writes PEFT's prompt_embeddings), kind on a compute backend.
type activation struct {
	f    func(float64) float64
	kind compute.Activation
}

var (
	reluAct = activation{kind: compute.ReLU, f: func(v float64) float64 { return max(v, 0) }}
	tanhAct = activation{kind: compute.Tanh, f: math.Tanh}
)

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// lstm is torch's bidirectional multi-layer nn.LSTM (batch_first, one
// sequence): gates i, f, g, o in that order, both biases trained.
type lstm struct {
	hidden int
	layers []lstmLayer
}

type lstmLayer struct {
	in  int
	dir [2]lstmDir // forward, reverse
}

type lstmDir struct{ Wih, Whh, Bih, Bhh *nn.Param }

func newLSTM(name string, in, hidden, layers int, rng *rand.Rand) *lstm {
	l := &lstm{hidden: hidden}
	bound := 1 / math.Sqrt(float64(hidden))
	for k := 0; k < layers; k++ {
		ly := lstmLayer{in: in}
		if k > 0 {
			ly.in = 2 * hidden
		}
		for d, suffix := range []string{"", "_reverse"} {
			s := fmt.Sprintf("_l%d%s", k, suffix)
			dd := lstmDir{
				Wih: nn.NewParam(name+".weight_ih"+s, 4*hidden, ly.in),
				Whh: nn.NewParam(name+".weight_hh"+s, 4*hidden, hidden),
				Bih: nn.NewParam(name+".bias_ih"+s, 4*hidden),
				Bhh: nn.NewParam(name+".bias_hh"+s, 4*hidden),
			}
			for _, p := range []*nn.Param{dd.Wih, dd.Whh, dd.Bih, dd.Bhh} {
				for i := range p.Data {
					p.Data[i] = float32((rng.Float64()*2 - 1) * bound)
				}
			}
			ly.dir[d] = dd
		}
		l.layers = append(l.layers, ly)
	}
	return l
}

// params lists the weights in torch's order.
func (l *lstm) params() []*nn.Param {
	var ps []*nn.Param
	for _, ly := range l.layers {
		for _, d := range ly.dir {
			ps = append(ps, d.Wih, d.Whh, d.Bih, d.Bhh)
		}
	}
	return ps
}

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

// forward runs the sequence x [T, in] and returns [T, 2H]: each step's
// forward and reverse hidden states side by side.
func (l *lstm) forward(x []float64, T int) []float64 {
	H := l.hidden
	g := make([]float64, 4*H)
	for k := range l.layers {
		ly := &l.layers[k]
		out := make([]float64, T*2*H)
		for d := range ly.dir {
			dd := &ly.dir[d]
			h, c := make([]float64, H), make([]float64, H)
			for s := 0; s < T; s++ {
				t := s
				if d == 1 {
					t = T - 1 - s
				}
				xt := x[t*ly.in : (t+1)*ly.in]
				// Every gate from the previous hidden state before any of
				// it is replaced.
				for j := 0; j < 4*H; j++ {
					v := float64(dd.Bih.Data[j]) + float64(dd.Bhh.Data[j])
					for i, w := range dd.Wih.Data[j*ly.in : (j+1)*ly.in] {
						v += float64(w) * xt[i]
					}
					for i, w := range dd.Whh.Data[j*H : (j+1)*H] {
						v += float64(w) * h[i]
					}
					if j >= 2*H && j < 3*H {
						g[j] = math.Tanh(v)
					} else {
						g[j] = sigmoid(v)
					}
				}
				for j := 0; j < H; j++ {
					c[j] = g[H+j]*c[j] + g[j]*g[2*H+j]
					h[j] = g[3*H+j] * math.Tanh(c[j])
					out[t*2*H+d*H+j] = h[j]
				}
			}
		}
		x = out
	}
	return x
}
