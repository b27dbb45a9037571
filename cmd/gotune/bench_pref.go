package main

import (
	"fmt"
	"io"
	"slices"

	"gotune/compute"
	"gotune/data"
	"gotune/model"
	"gotune/pref"
	"gotune/train"
)

// benchDPO times a sigmoid DPO step (policy forward and backward on both
// answers of each pair, one reference forward with the adapter off) and an
// SFT step on the same tokens, in turn for rounds rounds so both see the
// same state of a shared machine, and reports each and the ratio of their
// best steps. The batch's b rows are b/2 pairs whose answers are the rows'
// second halves.
func benchDPO(w io.Writer, be compute.Backend, dt compute.DType, method, shape string, b, t, rank, steps, rounds int, checkpoint bool, storage model.DType) error {
	if b < 2 || b%2 != 0 {
		return fmt.Errorf("--stage dpo: --batch %d must be even (pairs of rows)", b)
	}
	sft, err := newTrainBench(be, dt, method, shape, b, t, rank, checkpoint, storage, false)
	if err != nil {
		return err
	}
	defer sft.close()
	dpo, err := newTrainBench(be, dt, method, shape, b, t, rank, checkpoint, storage, false)
	if err != nil {
		return err
	}
	defer dpo.close()
	dpo.method += "+dpo"
	mb := dpo.batch
	for r := range b {
		for k := range t / 2 {
			mb.Labels[r*t+k] = data.IgnoreIndex // the prompt
		}
	}
	// Both answers of a pair share the prompt.
	for r := range b / 2 {
		copy(mb.IDs[(b/2+r)*t:(b/2+r)*t+t/2], mb.IDs[r*t:r*t+t/2])
	}
	c := pref.Config{Loss: pref.Sigmoid, Beta: 0.1}
	opt := model.AdamWConfig{LR: 1e-4, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}
	dpo.step = func() (float64, error) {
		dpo.dm.ZeroGrad()
		loss, err := train.PairStep(dpo.dm, mb, c, 1/float64(b/2))
		if err != nil {
			return 0, err
		}
		_, err = dpo.dm.AdamW(opt)
		return loss, err
	}
	if _, err := dpo.step(); err != nil {
		return err
	}
	var sftBest, dpoBest, sftCPU, dpoCPU []float64
	for range max(rounds, 1) {
		ls, err := sft.run(steps)
		if err != nil {
			return err
		}
		ld, err := dpo.run(steps)
		if err != nil {
			return err
		}
		ls["stage"], ld["stage"] = "sft", "dpo"
		emit(w, ls)
		emit(w, ld)
		sftBest = append(sftBest, ls["step_s_min"].(float64))
		dpoBest = append(dpoBest, ld["step_s_min"].(float64))
		sftCPU = append(sftCPU, ls["cpu_s_step"].(float64))
		dpoCPU = append(dpoCPU, ld["cpu_s_step"].(float64))
	}
	s, d := slices.Min(sftBest), slices.Min(dpoBest)
	sc, dc := slices.Min(sftCPU), slices.Min(dpoCPU)
	// value: best wall step against best wall step; cpu_ratio: the same in
	// CPU seconds, which other processes on a shared machine disturb less.
	emit(w, map[string]any{"bench": "dpo_over_sft", "method": method, "shape": shape, "batch": b, "seq": t,
		"sft_step_s": s, "dpo_step_s": d, "value": round(100*d/s) / 100, "unit": "×",
		"sft_cpu_s": sc, "dpo_cpu_s": dc, "cpu_ratio": round(100*dc/sc) / 100})
	return nil
}
