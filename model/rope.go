package model

import "math"

// invFreq returns the rotary inverse frequencies (head_dim·partial/2 values)
// and the factor cos/sin are scaled by, for a sequence of length seqLen,
// following transformers' rope initialisation for each rope_type. The base
// frequencies are rounded through float32 as transformers builds them.
func (c *Config) invFreq(seqLen int) ([]float64, float64) {
	r := c.Rope
	dim := int(float64(c.HeadDim) * r.PartialFactor)
	base := r.Theta
	if r.Type == "dynamic" && seqLen > c.MaxPositions && c.MaxPositions > 0 {
		base = base * math.Pow(r.Factor*float64(seqLen)/float64(c.MaxPositions)-(r.Factor-1), float64(dim)/float64(dim-2))
	}
	half := dim / 2
	inv := make([]float64, half)
	for i := range inv {
		exp := float32(float32(2*i) / float32(dim))
		inv[i] = float64(float32(1 / float32(math.Pow(base, float64(exp)))))
	}
	scale := 1.0
	switch r.Type {
	case "linear":
		for i := range inv {
			inv[i] /= r.Factor
		}
	case "llama3":
		old := float64(r.OriginalMaxPos)
		lowWave := old / r.LowFreqFactor
		highWave := old / r.HighFreqFactor
		for i, f := range inv {
			wave := 2 * math.Pi / f
			switch {
			case wave < highWave:
			case wave > lowWave:
				inv[i] = f / r.Factor
			default:
				smooth := (old/wave - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-smooth)*f/r.Factor + smooth*f
			}
		}
	case "yarn":
		inv, scale = c.yarn(dim, base)
	case "longrope":
		// transformers divides in float32: 1/(factor·base^(2i/dim)).
		ext := r.ShortFactor
		if c.ropeLong(seqLen) {
			ext = r.LongFactor
		}
		for i := range inv {
			p := float32(math.Pow(base, float64(float32(float32(2*i)/float32(dim)))))
			inv[i] = float64(1 / (float32(ext[i]) * p))
		}
		scale = r.AttnFactor
	}
	return inv, scale
}

// ropeLong reports whether a sequence of seqLen positions uses longrope's
// long factors (past the pretrained context); false for other rope types.
func (c *Config) ropeLong(seqLen int) bool {
	return c.Rope.Type == "longrope" && seqLen > c.Rope.OriginalMaxPos
}

func yarnMscale(scale, m float64) float64 {
	if scale <= 1 {
		return 1
	}
	return 0.1*m*math.Log(scale) + 1
}

func (c *Config) yarn(dim int, base float64) ([]float64, float64) {
	r := c.Rope
	factor := r.Factor
	orig := float64(r.OriginalMaxPos)
	attn := r.AttnFactor
	if attn == 0 {
		if r.Mscale != 0 && r.MscaleAllDim != 0 {
			attn = yarnMscale(factor, r.Mscale) / yarnMscale(factor, r.MscaleAllDim)
		} else {
			attn = yarnMscale(factor, 1)
		}
	}
	corr := func(rot float64) float64 {
		return float64(dim) * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(base))
	}
	low, high := corr(r.BetaFast), corr(r.BetaSlow)
	if r.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low = math.Max(low, 0)
	high = math.Min(high, float64(dim-1))
	if low == high {
		high += 0.001
	}
	half := dim / 2
	inv := make([]float64, half)
	for i := range inv {
		pos := float64(float32(math.Pow(base, float64(float32(2*i)/float32(dim)))))
		extrap := 1 / pos
		interp := 1 / (factor * pos)
		ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
		ef := 1 - ramp
		inv[i] = interp*(1-ef) + extrap*ef
	}
	return inv, attn
}

// RopeTable holds cos and sin for positions [0, n), head_dim wide, laid out as
// transformers does: the half-dim frequencies repeated twice.
type RopeTable struct {
	Dim, Rot int
	Cos, Sin []float32
}

// NewRopeTable computes cos/sin for n positions.
func (c *Config) NewRopeTable(n int) *RopeTable { return c.newRopeTable(n, n) }

// newRopeTable computes cos/sin for n positions with the frequencies of a
// sequence of seqLen positions.
func (c *Config) newRopeTable(n, seqLen int) *RopeTable {
	inv, scale := c.invFreq(seqLen)
	dim := c.HeadDim
	rot := 2 * len(inv)
	t := &RopeTable{Dim: dim, Rot: rot, Cos: make([]float32, n*dim), Sin: make([]float32, n*dim)}
	for p := 0; p < n; p++ {
		cs, sn := t.Cos[p*dim:(p+1)*dim], t.Sin[p*dim:(p+1)*dim]
		for i, f := range inv {
			a := float64(p) * f
			co, si := float32(math.Cos(a)*scale), float32(math.Sin(a)*scale)
			cs[i], cs[i+len(inv)] = co, co
			sn[i], sn[i+len(inv)] = si, si
		}
		// Dimensions past the rotary part pass through unchanged.
		for i := rot; i < dim; i++ {
			cs[i], sn[i] = 1, 0
		}
	}
	return t
}
