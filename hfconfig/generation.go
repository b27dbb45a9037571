package hfconfig

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
)

// GenerationConfig is what a model folder's generation_config.json says
// about sampling. Pointers are nil for fields the file leaves out, so the
// caller picks the defaults.
type GenerationConfig struct {
	Path  string // generation_config.json, for messages
	Found bool   // whether the file exists

	EOSTokenIDs       []int // eos_token_id: one id or a list
	DoSample          *bool
	Temperature       *float64
	TopK              *int
	TopP              *float64
	RepetitionPenalty *float64
}

// ReadGenerationConfig reads dir/generation_config.json; a missing file is
// not an error (Found is false) since many models ship none.
func ReadGenerationConfig(dir string) (*GenerationConfig, error) {
	g := &GenerationConfig{Path: filepath.Join(dir, "generation_config.json")}
	var raw struct {
		EOS         json.RawMessage `json:"eos_token_id"`
		DoSample    *bool           `json:"do_sample"`
		Temperature *float64        `json:"temperature"`
		TopK        *int            `json:"top_k"`
		TopP        *float64        `json:"top_p"`
		RepPenalty  *float64        `json:"repetition_penalty"`
	}
	if err := readJSON(g.Path, &raw); errors.Is(err, fs.ErrNotExist) {
		return g, nil
	} else if err != nil {
		return nil, err
	}
	g.Found = true
	g.DoSample, g.Temperature, g.TopK, g.TopP, g.RepetitionPenalty = raw.DoSample, raw.Temperature, raw.TopK, raw.TopP, raw.RepPenalty
	if !isNull(raw.EOS) {
		var one int
		if json.Unmarshal(raw.EOS, &one) == nil {
			g.EOSTokenIDs = []int{one}
		} else if err := json.Unmarshal(raw.EOS, &g.EOSTokenIDs); err != nil {
			return nil, fieldError(g.Path, "eos_token_id", "expected an integer or a list of them, got %.80s", raw.EOS)
		}
	}
	return g, nil
}
