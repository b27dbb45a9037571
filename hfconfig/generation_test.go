package hfconfig

import (
	"reflect"
	"testing"
)

func TestGenerationConfig(t *testing.T) {
	yes, temp, topP, rep, topK := true, 0.7, 0.9, 1.1, 20
	for _, c := range []struct {
		name, cfg string
		want      GenerationConfig
	}{
		{"empty", `{}`, GenerationConfig{Found: true}},
		{"one eos", `{"eos_token_id": 2}`, GenerationConfig{Found: true, EOSTokenIDs: []int{2}}},
		{"eos list", `{"eos_token_id": [2, 7]}`, GenerationConfig{Found: true, EOSTokenIDs: []int{2, 7}}},
		{"eos null", `{"eos_token_id": null}`, GenerationConfig{Found: true}},
		{"sampling", `{"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.1, "max_new_tokens": 9}`,
			GenerationConfig{Found: true, DoSample: &yes, Temperature: &temp, TopK: &topK, TopP: &topP, RepetitionPenalty: &rep}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := ReadGenerationConfig(folder(t, map[string]string{"generation_config.json": c.cfg}))
			if err != nil {
				t.Fatal(err)
			}
			c.want.Path = g.Path
			if !reflect.DeepEqual(*g, c.want) {
				t.Errorf("got  %+v\nwant %+v", *g, c.want)
			}
		})
	}
	g, err := ReadGenerationConfig(t.TempDir())
	if err != nil || g.Found || g.EOSTokenIDs != nil || g.Temperature != nil {
		t.Errorf("missing file: %+v, %v", g, err)
	}
}

func TestGenerationConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, cfg, field string }{
		{"eos string", `{"eos_token_id": "2"}`, "field eos_token_id"},
		{"eos list of strings", `{"eos_token_id": ["2"]}`, "field eos_token_id"},
		{"top_k fraction", `{"top_k": 1.5}`, "field top_k"},
		{"temperature string", `{"temperature": "hot"}`, "field temperature"},
		{"do_sample string", `{"do_sample": "yes"}`, "field do_sample"},
		{"not JSON", `{"top_k": `, "not valid JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadGenerationConfig(folder(t, map[string]string{"generation_config.json": c.cfg}))
			wantFieldError(t, err, "generation_config.json", c.field)
		})
	}
}
