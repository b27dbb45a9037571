package ui

import (
	"net/http"
	"sync"
	"time"

	"gotune/compute"
	"gotune/method"
	"gotune/model"
	"gotune/plan"
)

// rates caches the machine's measured throughputs per model shape: the
// probes take a few hundred milliseconds, and the page asks for a plan
// each time a setting changes.
type rates struct {
	mu sync.Mutex
	m  map[[3]int][3]float64
}

func (r *rates) get(be compute.Backend, rows, cols, inner int) ([3]float64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := [3]int{rows, cols, inner}
	if v, ok := r.m[key]; ok {
		return v, nil
	}
	if be == nil {
		return [3]float64{}, nil
	}
	f32, nf4, err := plan.Probe(be, 150*time.Millisecond, rows, cols, inner)
	if err != nil {
		return [3]float64{}, err
	}
	exps, err := plan.ProbeExp(be, 100*time.Millisecond)
	if err != nil {
		return [3]float64{}, err
	}
	v := [3]float64{f32, nf4, exps}
	if r.m == nil {
		r.m = map[[3]int][3]float64{}
	}
	r.m[key] = v
	return v, nil
}

// handlePlan answers what `gotune plan` answers for a model, a dataset
// file and the batch, sequence length and rank the form holds.
func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Dataset  string `json:"dataset_file"`
		Batch    int    `json:"batch"`
		Seq      int    `json:"seq"`
		LoRARank int    `json:"lora_rank"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Batch < 1 || req.Seq < 2 || req.LoRARank < 0 {
		s.fail(w, r, badRequest("batch must be at least 1, seq at least 2, lora_rank not negative"))
		return
	}
	dir, err := s.resolve(req.Model, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := plan.Request{Model: s.display(dir), Samples: -1, Rows: method.PlanRows()}
	if p.Config, err = model.LoadConfig(dir); err != nil {
		s.fail(w, r, err)
		return
	}
	if p.Options.SourceBytes, err = plan.SourceBytes(dir); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Dataset != "" {
		f, err := s.resolve(req.Dataset, false)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if p.Samples, err = plan.CountRecords(f); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if p.RAM, err = plan.MemTotal(); err != nil {
		s.fail(w, r, err)
		return
	}
	var be compute.Backend
	if s.backend != nil {
		be = s.backend()
	}
	v, err := s.rates.get(be, min(req.Batch*req.Seq, 1024), p.Config.Intermediate, p.Config.Hidden)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	src := p.Options.SourceBytes
	p.Options = plan.Options{Batch: req.Batch, Seq: req.Seq, LoRARank: max(req.LoRARank, 1), Virtual: 20, BottleneckSize: 64,
		Storage: model.F32, GFLOPS: v[0], NF4GFLOPS: v[1], MExps: v[2], SourceBytes: src}
	res, err := plan.Make(p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	res.WriteJSON(w)
}
