package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gotune/checks"
)

// Case is one reference encoding from tokenizer_cases.json.
type Case struct {
	Text               string   `json:"text"`
	IDs                []int    `json:"ids"`
	IDsWithSpecial     []int    `json:"ids_with_special_tokens"`
	Tokens             []string `json:"tokens"`
	Decoded            string   `json:"decoded"`
	DecodedSkipSpecial string   `json:"decoded_skip_special"`
}

// ReadCases reads a tokenizer_cases.json file.
func ReadCases(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: expected a JSON list of cases: %w", path, err)
	}
	cases := make([]Case, len(raw))
	for k, r := range raw {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r, &fields); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: case %d: expected an object: %w", path, k, err)
		}
		for _, f := range []string{"text", "ids", "ids_with_special_tokens", "tokens", "decoded", "decoded_skip_special"} {
			if _, ok := fields[f]; !ok {
				return nil, fmt.Errorf("tokenizer: %s: case %d: missing field %q", path, k, f)
			}
		}
		if err := json.Unmarshal(r, &cases[k]); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: case %d: %w", path, k, err)
		}
	}
	return cases, nil
}

// CheckCases loads the tokenizer in tokDir and compares it with
// tokDir/tokenizer_cases.json: one result per kind (ids, ids_with_special,
// tokens, decoded, decoded_skip_special), counting mismatching cases.
// Decodes start from the ids without special tokens, as the reference does.
func CheckCases(tokDir string) ([]checks.Result, error) {
	t, err := Load(tokDir)
	if err != nil {
		return nil, err
	}
	cases, err := ReadCases(filepath.Join(tokDir, "tokenizer_cases.json"))
	if err != nil {
		return nil, err
	}
	type kind struct {
		name  string
		bad   int
		first string
	}
	kinds := []*kind{{name: "ids"}, {name: "ids_with_special"}, {name: "tokens"}, {name: "decoded"}, {name: "decoded_skip_special"}}
	note := func(k *kind, i int, c Case, got, want any) {
		k.bad++
		if k.first == "" {
			k.first = fmt.Sprintf("case %d %s: got %v, want %v", i, quoteShort(c.Text), got, want)
		}
	}
	for i, c := range cases {
		ids := t.Encode(c.Text, false)
		if !slices.Equal(ids, c.IDs) {
			note(kinds[0], i, c, ids, c.IDs)
		}
		if got := t.Encode(c.Text, true); !slices.Equal(got, c.IDsWithSpecial) {
			note(kinds[1], i, c, got, c.IDsWithSpecial)
		}
		toks := make([]string, len(ids))
		for k, id := range ids {
			toks[k] = t.IDToToken(id)
		}
		if !slices.Equal(toks, c.Tokens) {
			note(kinds[2], i, c, toks, c.Tokens)
		}
		if got := t.Decode(c.IDs, false); got != c.Decoded {
			note(kinds[3], i, c, strconv.Quote(got), strconv.Quote(c.Decoded))
		}
		if got := t.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
			note(kinds[4], i, c, strconv.Quote(got), strconv.Quote(c.DecodedSkipSpecial))
		}
	}
	name := filepath.Base(filepath.Clean(tokDir))
	out := make([]checks.Result, len(kinds))
	for k, kd := range kinds {
		r := checks.New("tokenizer/"+name+"/"+kd.name, "mismatches", float64(kd.bad), 0)
		r.Detail = fmt.Sprintf("%d cases", len(cases))
		if kd.first != "" {
			r.Detail += "; first mismatch: " + kd.first
		}
		out[k] = r
	}
	return out, nil
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return strconv.Quote(s)
}

// llamaCppSeparator separates the strings of llama.cpp's .inp files.
const llamaCppSeparator = "\n__ggml_vocab_test__\n"

// ReadLlamaCppVocabTest reads the .inp and .out files beside a llama.cpp
// test vocabulary: the input strings and the expected ids of each.
func ReadLlamaCppVocabTest(ggufPath string) (inputs []string, want [][]int, err error) {
	inp, err := os.ReadFile(ggufPath + ".inp")
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	out, err := os.ReadFile(ggufPath + ".out")
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	inputs = strings.Split(string(inp), llamaCppSeparator)
	if n := len(inputs); n > 0 && inputs[n-1] == "" {
		inputs = inputs[:n-1] // the file ends with a separator
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(inputs) {
		return nil, nil, fmt.Errorf("tokenizer: %s.out: %d lines for %d inputs in %s.inp", ggufPath, len(lines), len(inputs), ggufPath)
	}
	for n, line := range lines {
		var ids []int
		for _, f := range strings.Fields(line) {
			id, err := strconv.Atoi(f)
			if err != nil {
				return nil, nil, fmt.Errorf("tokenizer: %s.out: line %d: %q is not a token id", ggufPath, n+1, f)
			}
			ids = append(ids, id)
		}
		want = append(want, ids)
	}
	return inputs, want, nil
}

// CheckLlamaCppVocab loads a GGUF vocabulary and compares its encodings
// (no BOS) with the .inp/.out files beside it.
func CheckLlamaCppVocab(ggufPath string) ([]checks.Result, error) {
	t, err := LoadGGUF(ggufPath)
	if err != nil {
		return nil, err
	}
	inputs, want, err := ReadLlamaCppVocabTest(ggufPath)
	if err != nil {
		return nil, err
	}
	bad, first := 0, ""
	for i, s := range inputs {
		got := t.Encode(s, false)
		if !slices.Equal(got, want[i]) {
			bad++
			if first == "" {
				first = fmt.Sprintf("; first mismatch: input %d %s: got %v, want %v", i, quoteShort(s), got, want[i])
			}
		}
	}
	r := checks.New("tokenizer/llamacpp/"+filepath.Base(ggufPath)+"/ids", "mismatches", float64(bad), 0)
	r.Detail = fmt.Sprintf("%d inputs%s", len(inputs), first)
	return []checks.Result{r}, nil
}
