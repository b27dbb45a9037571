package ui

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"gotune/train"
)

// handleEval scores the base model, and the fine-tune when an adapter is
// given, on each chosen dataset, as `gotune eval CONFIG --adapter DIR`
// does: loss and perplexity of the tokens training would train on. Adding
// general data to the datasets is the forgetting check.
func (s *Server) handleEval(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Settings Settings   `json:"settings"` // model_name_or_path, template, cutoff_len, ...
		Datasets []Settings `json:"datasets"` // each {"dataset": ..., "dataset_dir": ...}
		Adapter  string     `json:"adapter"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(req.Datasets) == 0 || len(req.Datasets) > 16 {
		s.fail(w, r, badRequest("datasets: pick 1 to 16"))
		return
	}
	if req.Settings["model_name_or_path"] == nil {
		s.fail(w, r, badRequest("settings.model_name_or_path: pick a model"))
		return
	}
	adapter := ""
	if req.Adapter != "" {
		var err error
		if adapter, err = s.resolve(req.Adapter, false); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	// The tokenized copy evaluation needs goes to a temporary folder, not
	// into the user's folders.
	tmp, err := os.MkdirTemp("", "gotune-ui-eval-")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer os.RemoveAll(tmp)
	type row struct {
		Dataset string             `json:"dataset"`
		Base    []train.EvalResult `json:"base"`
		Adapter []train.EvalResult `json:"adapter,omitempty"`
	}
	out := []row{}
	for i, d := range req.Datasets {
		set := Settings{}
		for k, v := range req.Settings {
			set[k] = v
		}
		for _, k := range []string{"dataset", "dataset_dir"} {
			if d[k] != nil {
				set[k] = d[k]
			}
		}
		if set["dataset"] == nil {
			s.fail(w, r, badRequest("datasets[%d].dataset: missing", i))
			return
		}
		_, cfg, err := s.renderYAML(set, false)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		cfg.TokenizedPath = filepath.Join(tmp, "data", strconv.Itoa(i))
		res := row{Dataset: cfg.Dataset[0]}
		be, err := s.openBackend()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		opt := train.EvalOptions{Backend: be}
		if res.Base, err = train.Evaluate(cfg, cfg.ModelNameOrPath, "", opt); err != nil {
			s.fail(w, r, err)
			return
		}
		if adapter != "" {
			if res.Adapter, err = train.Evaluate(cfg, cfg.ModelNameOrPath, adapter, opt); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		out = append(out, res)
	}
	writeJSON(w, out)
}
