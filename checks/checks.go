// Package checks holds the result type of parity and self checks, shared by
// every package that compares gotune with reference data.
package checks

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// Result is one comparison against a reference: Value must not exceed Limit.
// For exact comparisons (token ids) Metric is "mismatches" and Limit is 0.
type Result struct {
	Check  string  `json:"check"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Pass   bool    `json:"pass"`
	Detail string  `json:"detail,omitempty"`
}

// New builds a result and decides Pass (NaN never passes).
func New(check, metric string, value, limit float64) Result {
	return Result{Check: check, Metric: metric, Value: value, Limit: limit, Pass: value <= limit && !math.IsNaN(value)}
}

// Write prints one JSON object per line followed by "N passed, M failed" and
// returns the number of failures.
func Write(w io.Writer, results []Result) int {
	failed := 0
	for _, r := range results {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
		if !r.Pass {
			failed++
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed
}

// RelErr returns ‖a−b‖/‖b‖ computed in float64 (‖a−b‖ when ‖b‖ is 0).
func RelErr(a []float32, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		d := float64(a[i]) - b[i]
		num += d * d
		den += b[i] * b[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
