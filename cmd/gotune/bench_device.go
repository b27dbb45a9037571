package main

import (
	"math"

	"gotune/compute"
	"gotune/model"
)

// profiler is implemented by backends that can time their operations.
type profiler interface {
	StartProfile()
	StopProfile() []compute.OpTime
}

// memInfo is implemented by backends that can report the device's own view
// of its memory (what other tools such as nvidia-smi show).
type memInfo interface {
	FreeMemory() (free, total int64)
}

// benchDeviceShape times training steps (forward, backward, clipping,
// AdamW) of a named shape on be, with random weights and tokens, and with
// profile one more step with every operation timed (where be can).
func benchDeviceShape(be compute.Backend, dt compute.DType, method, shape string, b, t, rank, steps int, profile, checkpoint bool, storage model.DType, adam8 bool) (map[string]any, error) {
	tb, err := newTrainBench(be, dt, method, shape, b, t, rank, checkpoint, storage, adam8)
	if err != nil {
		return nil, err
	}
	defer tb.close()
	line, err := tb.run(steps)
	if err != nil {
		return nil, err
	}
	if mi, ok := be.(memInfo); ok {
		free, total := mi.FreeMemory()
		line["device_used_gib"] = math.Round(float64(total-free)/(1<<30)*100) / 100
	}
	if p, ok := be.(profiler); ok && profile {
		p.StartProfile()
		if _, err := tb.step(); err != nil {
			return nil, err
		}
		var ops []map[string]any
		total := 0.0
		for _, o := range p.StopProfile() {
			total += o.MS
			ops = append(ops, map[string]any{"op": o.Op, "calls": o.Calls, "ms": math.Round(o.MS*1000) / 1000})
		}
		line["profile"] = ops
		line["profile_gpu_ms"] = math.Round(total*100) / 100
	}
	return line, nil
}
