package ckpt

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// A log entry's stage metrics sit beside the common keys, in key order,
// and read back; null reads as NaN.
func TestLogEntryMetricsRoundTrip(t *testing.T) {
	e := LogEntry{Step: 3, Epoch: 0.5, Loss: 0.69, LR: 1e-4, GradNorm: 2, EvalLoss: math.NaN(),
		Metrics: map[string]float64{"rewards/margins": 0.25, "rewards/chosen": 0.5, "kl": math.NaN()}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"step":3,"epoch":0.5,"loss":0.69,"learning_rate":0.0001,"grad_norm":2,"kl":null,"rewards/chosen":0.5,"rewards/margins":0.25}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back LogEntry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Metrics["rewards/chosen"] != 0.5 || back.Metrics["rewards/margins"] != 0.25 || !math.IsNaN(back.Metrics["kl"]) || len(back.Metrics) != 3 {
		t.Errorf("read back %+v", back.Metrics)
	}
	plain, _ := json.Marshal(LogEntry{Step: 1, EvalLoss: math.NaN()})
	if strings.Contains(string(plain), "rewards") {
		t.Errorf("%s", plain)
	}
}
