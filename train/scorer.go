package train

import (
	"gotune/model"
)

// scorer computes per-token log-probabilities and their weighted backward
// pass for the stages whose losses are over whole sequences (dpo, kto,
// grpo), on the backend's copy of the model. A device
// failure is kept and reported by Err; until then the calls go on with
// zeros so the stage's code needs no error at every call.
type scorer interface {
	// TokenLogProbs runs the forward pass and returns log p(label) of
	// every trained token, row by row and left to right.
	TokenLogProbs(*model.Batch) []float64
	// TokenRows gives the sequence of each value of the last TokenLogProbs.
	TokenRows() []int
	// TokenEntropies gives, when the entropy metric is on (DeviceModel.SetEntropy), the entropy at each value of the last
	// TokenLogProbs.
	TokenEntropies() []float64
	// BackwardTokens accumulates the gradient of Σ coef[i]·log pᵢ.
	BackwardTokens(coef []float32)
	// WithoutAdapters switches the attached method off until restore.
	WithoutAdapters() (restore func())
	Err() error
}

// scorer is the device copy's, made once so its error is kept.
func (t *Trainer) scorer() scorer {
	if t.devScorer == nil {
		t.devScorer = &deviceScorer{dm: t.dev}
	}
	return t.devScorer
}

type deviceScorer struct {
	dm   *model.DeviceModel
	rows []int
	err  error
}

func (d *deviceScorer) TokenLogProbs(b *model.Batch) []float64 {
	d.rows = trainedRows(b)
	if d.err == nil {
		lp, err := d.dm.TokenLogProbs(b)
		if err == nil {
			return lp
		}
		d.err = err
	}
	return make([]float64, len(d.rows))
}

func (d *deviceScorer) TokenRows() []int { return d.rows }

func (d *deviceScorer) TokenEntropies() []float64 {
	if d.err != nil {
		return nil
	}
	return d.dm.TokenEntropies()
}

func (d *deviceScorer) BackwardTokens(coef []float32) {
	if d.err == nil {
		d.err = d.dm.BackwardTokens(coef)
	}
}

func (d *deviceScorer) WithoutAdapters() func() { return d.dm.WithoutAdapters() }
func (d *deviceScorer) Err() error              { return d.err }

// trainedRows is the sequence of each trained token of b, in the order
// TokenLogProbs returns them.
func trainedRows(b *model.Batch) []int {
	var out []int
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			if b.Labels[r*b.T+t+1] != model.IgnoreIndex {
				out = append(out, r)
			}
		}
	}
	return out
}
