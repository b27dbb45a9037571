package plan

import "fmt"

// Preference stages (stage dpo and kto) score two sequences per sample in
// one micro-batch — chosen and rejected answers, or KTO's answer and its
// mismatched KL row — so their activations are those of twice the batch.
// The reference model adds no weights: PEFT methods score it with the
// adapter off, one more forward pass per step over both sequences; full
// and freeze tuning score the initial weights once before training and
// keep 16 bytes a sample.

// isPreference reports whether stage trains on preferences.
func isPreference(stage string) bool { return stage == "dpo" || stage == "kto" }

// prefOptions is o for the policy pass of a preference stage.
func prefOptions(o Options) Options {
	o.Batch = max(o.Batch, 1) * 2
	return o
}

// addReference adds the reference forward pass of a PEFT method to e: about
// 2 FLOPs per parameter per token over both sequences of every sample,
// scaling the step time with the FLOPs.
func addReference(e *Estimate, params int64, o Options, samples int64) {
	if !e.Adapter {
		n := "the dataset"
		if samples >= 0 {
			n = fmt.Sprintf("%d samples", samples)
		}
		e.Notes = append(e.Notes, fmt.Sprintf("reference: the initial weights, scored once over %s before training (16 bytes a sample)", n))
		return
	}
	ref := 2 * float64(params) * float64(2*max(o.Batch, 1)*max(o.Seq, 1))
	for _, p := range []struct{ flops, secs *float64 }{{&e.StepFLOPs, &e.StepSeconds}, {&e.StepFLOPsCheckpoint, &e.StepSecondsCheckpoint}} {
		if *p.flops > 0 {
			*p.secs *= (*p.flops + ref) / *p.flops
		}
		*p.flops += ref
	}
	e.Notes = append(e.Notes, "reference: the base with the adapter off, one forward pass per step (no second copy of the weights)")
}
