package train

import (
	"gotune/model"
	"gotune/optim"
)

// deviceResumed8bit uploads the 8-bit AdamW state a checkpoint restored on
// the host: codes and block scales as saved, so the run continues bit for
// bit.
func (t *Trainer) deviceResumed8bit(o *optim.AdamW8bit) error {
	for _, p := range t.Params {
		if t.dev.Adam8bit(p) {
			if m8, v8, ms, vs, steps, ok := o.Moments8(p); ok {
				if err := t.dev.SetAdam8State(p, model.Adam8State{M: m8, V: v8, MScale: ms, VScale: vs}, steps); err != nil {
					return err
				}
			}
			continue
		}
		if m, v, steps, ok := o.Moments(p); ok {
			if err := t.dev.SetAdamState(p, m, v, steps); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncFromDevice8bit copies the device's 8-bit AdamW state into the host
// optimizer, which checkpoints save.
func (t *Trainer) syncFromDevice8bit(o *optim.AdamW8bit) error {
	for _, p := range t.Params {
		if t.dev.Adam8bit(p) {
			st, steps, err := t.dev.Adam8State(p)
			if err != nil {
				return err
			}
			if steps == 0 {
				continue
			}
			if err := o.SetMoments8(p, st.M, st.V, st.MScale, st.VScale, steps); err != nil {
				return err
			}
			continue
		}
		m, v, steps, err := t.dev.AdamState(p)
		if err != nil {
			return err
		}
		if steps == 0 {
			continue
		}
		if err := o.SetMoments(p, m, v, steps); err != nil {
			return err
		}
	}
	return nil
}
