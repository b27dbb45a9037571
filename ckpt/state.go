package ckpt

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
)

// TrainerStateFile is the trainer state's file name inside a checkpoint, as
// the Hugging Face Trainer names it.
const TrainerStateFile = "trainer_state.json"

// TrainerState is what resuming needs besides weights and optimizer state.
// Keys follow the Hugging Face trainer_state.json where one exists.
type TrainerState struct {
	GlobalStep int     `json:"global_step"`
	Epoch      float64 `json:"epoch"` // fractional, as logged
	MaxSteps   int     `json:"max_steps"`
	// Data says where the data loader stands, so a resumed run sees the
	// same batches an uninterrupted run would have seen.
	Data DataPosition `json:"data_position"`
	// RNG is the full state of the trainer's random generators (dropout,
	// shuffling), in the order the trainer defines.
	RNG                 []uint64   `json:"rng_state"`
	LogHistory          []LogEntry `json:"log_history"`
	BestMetric          *float64   `json:"best_metric"`
	BestModelCheckpoint string     `json:"best_model_checkpoint,omitempty"`
	// Window holds the steps since the last logged one, so that a run
	// resumed between two logging steps logs the same mean as an
	// uninterrupted run when logging_steps does not divide save_steps.
	Window LogWindow `json:"log_window"`
}

// LogWindow accumulates the steps since the last log line.
type LogWindow struct {
	LossSum float64
	NormSum float64
	Steps   int
	Tokens  int64
}

type logWindowJSON struct {
	LossSum *float64 `json:"loss_sum"`
	NormSum *float64 `json:"grad_norm_sum"`
	Steps   int      `json:"steps"`
	Tokens  int64    `json:"tokens"`
}

// MarshalJSON writes non-finite sums as null.
func (w LogWindow) MarshalJSON() ([]byte, error) {
	return json.Marshal(logWindowJSON{finite(w.LossSum), finite(w.NormSum), w.Steps, w.Tokens})
}

// UnmarshalJSON reads null as NaN.
func (w *LogWindow) UnmarshalJSON(b []byte) error {
	var j logWindowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*w = LogWindow{orNaN(j.LossSum), orNaN(j.NormSum), j.Steps, j.Tokens}
	return nil
}

// DataPosition locates the next micro-batch: the epoch, the number of
// micro-batches of that epoch already consumed, and the shuffle seed.
type DataPosition struct {
	Epoch       int    `json:"epoch"`
	BatchIndex  int    `json:"batch_index"`
	ShuffleSeed uint64 `json:"shuffle_seed"`
}

// LogEntry is one logged step. Non-finite values (a diverged loss) are stored
// as null, since JSON has no NaN, and read back as NaN.
type LogEntry struct {
	Step     int
	Epoch    float64
	Loss     float64
	LR       float64
	GradNorm float64
	EvalLoss float64 // NaN when the step had no evaluation
	// Metrics are a stage's own logged values (the preference stages'
	// rewards/chosen, …), written beside the others as transformers'
	// log_history does.
	Metrics map[string]float64
}

type logEntryJSON struct {
	Step     int      `json:"step"`
	Epoch    *float64 `json:"epoch"`
	Loss     *float64 `json:"loss"`
	LR       *float64 `json:"learning_rate"`
	GradNorm *float64 `json:"grad_norm"`
	EvalLoss *float64 `json:"eval_loss,omitempty"`
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// MarshalJSON writes non-finite numbers as null, and Metrics after the
// common keys in key order.
func (e LogEntry) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(logEntryJSON{
		Step: e.Step, Epoch: finite(e.Epoch), Loss: finite(e.Loss),
		LR: finite(e.LR), GradNorm: finite(e.GradNorm), EvalLoss: finite(e.EvalLoss),
	})
	if err != nil || len(e.Metrics) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(e.Metrics))
	for k := range e.Metrics {
		if _, common := logEntryKeys[k]; !common {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b = b[:len(b)-1]
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(finite(e.Metrics[k]))
		if err != nil {
			return nil, err
		}
		b = append(append(append(append(b, ','), kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}

// logEntryKeys are the keys logEntryJSON writes.
var logEntryKeys = map[string]struct{}{"step": {}, "epoch": {}, "loss": {}, "learning_rate": {}, "grad_norm": {}, "eval_loss": {}}

// UnmarshalJSON reads null as NaN; numeric keys beyond the common ones
// are Metrics.
func (e *LogEntry) UnmarshalJSON(b []byte) error {
	var j logEntryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = LogEntry{Step: j.Step, Epoch: orNaN(j.Epoch), Loss: orNaN(j.Loss),
		LR: orNaN(j.LR), GradNorm: orNaN(j.GradNorm), EvalLoss: orNaN(j.EvalLoss)}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, raw := range all {
		if _, common := logEntryKeys[k]; common {
			continue
		}
		var v *float64
		if json.Unmarshal(raw, &v) != nil {
			continue // not a number: not a metric of ours
		}
		if e.Metrics == nil {
			e.Metrics = map[string]float64{}
		}
		e.Metrics[k] = orNaN(v)
	}
	return nil
}

// SaveTrainerState writes dir/trainer_state.json atomically.
func SaveTrainerState(dir string, s *TrainerState) error {
	if s.BestMetric != nil && (math.IsNaN(*s.BestMetric) || math.IsInf(*s.BestMetric, 0)) {
		return fmt.Errorf("trainer state: best_metric is %v; want a finite number or none", *s.BestMetric)
	}
	return WriteJSONAtomic(filepath.Join(dir, TrainerStateFile), s)
}

// LoadTrainerState reads dir/trainer_state.json and checks it is usable.
func LoadTrainerState(dir string) (*TrainerState, error) {
	path := filepath.Join(dir, TrainerStateFile)
	var s TrainerState
	if err := ReadJSON(path, &s); err != nil {
		return nil, fmt.Errorf("trainer state: %w", err)
	}
	switch {
	case s.GlobalStep < 0:
		return nil, fmt.Errorf("%s: global_step is %d; want >= 0", path, s.GlobalStep)
	case s.MaxSteps < 0:
		return nil, fmt.Errorf("%s: max_steps is %d; want >= 0", path, s.MaxSteps)
	case s.Data.Epoch < 0 || s.Data.BatchIndex < 0:
		return nil, fmt.Errorf("%s: data_position {epoch %d, batch_index %d}; want both >= 0", path, s.Data.Epoch, s.Data.BatchIndex)
	case math.IsNaN(s.Epoch) || s.Epoch < 0:
		return nil, fmt.Errorf("%s: epoch is %v; want >= 0", path, s.Epoch)
	case s.Window.Steps < 0 || s.Window.Steps > s.GlobalStep || s.Window.Tokens < 0:
		return nil, fmt.Errorf("%s: log_window {steps %d, tokens %d}; want 0..global_step steps and tokens >= 0", path, s.Window.Steps, s.Window.Tokens)
	}
	for i, e := range s.LogHistory {
		if e.Step < 0 || e.Step > s.GlobalStep {
			return nil, fmt.Errorf("%s: log_history[%d].step is %d; want 0..global_step (%d)", path, i, e.Step, s.GlobalStep)
		}
	}
	return &s, nil
}
