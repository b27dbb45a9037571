package plan_test

import (
	"bytes"
	"strings"
	"testing"

	"gotune/method"
	"gotune/plan"
)

// A preference stage's plan counts pairs, holds the activations of both
// answers, adds the reference pass to PEFT methods' step FLOPs, and says
// how the reference is had without a second copy of the weights.
func TestPreferencePlan(t *testing.T) {
	cfg := mustShape(t, "smollm2-135m")
	o := plan.Options{Batch: 2, Seq: 256, GFLOPS: 100, NF4GFLOPS: 50}
	sft, err := plan.Make(plan.Request{Model: "m", Config: cfg, Samples: 500, RAM: 64 << 30, Options: o, Rows: method.PlanRows()})
	if err != nil {
		t.Fatal(err)
	}
	dpo, err := plan.Make(plan.Request{Model: "m", Config: cfg, Samples: 500, RAM: 64 << 30, Options: o, Stage: "dpo", Rows: method.PlanRows()})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range dpo.Methods {
		s := sft.Methods[i]
		if !(v.Memory.Activations > s.Memory.Activations) || v.Memory.Weights != s.Memory.Weights {
			t.Errorf("%s: activations %d vs sft %d, weights %d vs %d", v.Method, v.Memory.Activations, s.Memory.Activations, v.Memory.Weights, s.Memory.Weights)
		}
		// Two sequences a sample: at least twice the FLOPs; PEFT methods
		// add the reference forward on top.
		ratio := v.StepFLOPs / s.StepFLOPs
		if ratio < 1.99 || (v.Adapter && ratio < 2.3) {
			t.Errorf("%s: step FLOPs %.3g× sft", v.Method, ratio)
		}
	}
	var b bytes.Buffer
	if err := dpo.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stage dpo: 500 pairs", "gotune data inspect", "reference: "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
}
