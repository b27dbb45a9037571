package chat

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readInt64Tensor reads one int64 tensor from a safetensors file.
func readInt64Tensor(path, name string) ([]int64, []int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("%s: short file", path)
	}
	n := binary.LittleEndian.Uint64(data)
	if n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("%s: header length %d past end", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &hdr); err != nil {
		return nil, nil, err
	}
	var info struct {
		Dtype   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	if err := json.Unmarshal(hdr[name], &info); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
	}
	if info.Dtype != "I64" {
		return nil, nil, fmt.Errorf("%s: %s is %s", path, name, info.Dtype)
	}
	body := data[8+n:]
	if info.Offsets[1] > len(body) || info.Offsets[0] > info.Offsets[1] {
		return nil, nil, fmt.Errorf("%s: bad offsets", path)
	}
	raw := body[info.Offsets[0]:info.Offsets[1]]
	out := make([]int64, len(raw)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, info.Shape, nil
}

// vocabDecoder decodes ids with the model's tokenizer.json (byte-level or
// SentencePiece-style), enough to compare label text with span text.
func vocabDecoder(path string) (func(ids []int64) string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tj struct {
		Model struct {
			Vocab map[string]int64 `json:"vocab"`
		} `json:"model"`
		Added []struct {
			ID      int64  `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, err
	}
	inv := map[int64]string{}
	for k, v := range tj.Model.Vocab {
		inv[v] = k
	}
	added := map[int64]bool{}
	for _, a := range tj.Added {
		inv[a.ID] = a.Content
		added[a.ID] = true
	}
	// GPT-2 byte<->unicode table
	byteOf := map[rune]byte{}
	nxt := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			byteOf[rune(b)] = byte(b)
		} else {
			byteOf[rune(256+nxt)] = byte(b)
			nxt++
		}
	}
	byteLevel := strings.Contains(string(data), `"ByteLevel"`)
	return func(ids []int64) string {
		var sb strings.Builder
		for _, id := range ids {
			tok := inv[id]
			switch {
			case added[id]:
				sb.WriteString(tok)
			case byteLevel:
				for _, r := range tok {
					sb.WriteByte(byteOf[r])
				}
			case strings.HasPrefix(tok, "<0x") && len(tok) == 6:
				v, _ := strconv.ParseUint(tok[3:5], 16, 8)
				sb.WriteByte(byte(v))
			default:
				sb.WriteString(strings.ReplaceAll(tok, "▁", " "))
			}
		}
		return sb.String()
	}, nil
}

// TestReferenceSpans renders the reference models' conversations with their
// own templates and checks the last assistant span against the tokens
// transformers trained (labels != -100).
func TestReferenceSpans(t *testing.T) {
	cases := []struct {
		model     string
		wantLast  []string // expected span text of the last assistant turn per conversation
		textStart string
	}{
		{"qwen3", []string{
			"<think>\n\n</think>\n\n細胞理論認為所有生命體由細胞構成,細胞是生物的基本結構和功能單位。<|im_end|>\n",
			"<think>\n\n</think>\n\nTwo small low-rank matrices per weight.<|im_end|>\n"}, "<|im_start|>"},
		{"qwen2", []string{
			"<think>\n\n</think>\n\n細胞理論認為所有生命體由細胞構成,細胞是生物的基本結構和功能單位。<|im_end|>\n",
			"<think>\n\n</think>\n\nTwo small low-rank matrices per weight.<|im_end|>\n"}, "<|im_start|>"},
		{"llama", []string{"All living things are made of cells.</s>", "Two small low-rank matrices.</s>"}, "<s>[INST]"},
	}
	for _, tc := range cases {
		t.Run(tc.model, func(t *testing.T) {
			dir := filepath.Join("testdata", "reference", tc.model)
			tmpl, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var meta struct {
				Conversations []json.RawMessage `json:"conversations"`
			}
			data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &meta); err != nil {
				t.Fatal(err)
			}
			ids, shape, err := readInt64Tensor(filepath.Join(dir, "batch.safetensors"), "input_ids")
			if err != nil {
				t.Fatal(err)
			}
			labels, _, err := readInt64Tensor(filepath.Join(dir, "batch.safetensors"), "labels")
			if err != nil {
				t.Fatal(err)
			}
			mask, _, err := readInt64Tensor(filepath.Join(dir, "batch.safetensors"), "attention_mask")
			if err != nil {
				t.Fatal(err)
			}
			decode, derr := vocabDecoder(filepath.Join("..", "testdata", "reference", tc.model, "model", "tokenizer.json"))
			if len(meta.Conversations) != len(tc.wantLast) || shape[0] != len(tc.wantLast) {
				t.Fatalf("conversations %d, batch rows %d, want %d", len(meta.Conversations), shape[0], len(tc.wantLast))
			}
			for row, raw := range meta.Conversations {
				msgs, err := ParseMessages(raw)
				if err != nil {
					t.Fatal(err)
				}
				text, spans, err := tmpl.RenderSpans(msgs, Options{})
				if err != nil {
					t.Fatal(err)
				}
				plain, err := tmpl.Render(msgs, Options{})
				if err != nil || plain != text {
					t.Fatalf("Render and RenderSpans disagree: %v", err)
				}
				if !strings.HasPrefix(text, tc.textStart) {
					t.Errorf("row %d: text starts %q", row, clip(text))
				}
				if len(spans) != len(msgs) {
					t.Fatalf("row %d: %d spans for %d messages: %+v", row, len(spans), len(msgs), spans)
				}
				last := spans[len(spans)-1]
				if last.Role != "assistant" || last.Message != len(msgs)-1 {
					t.Fatalf("row %d: last span %+v", row, last)
				}
				if got := text[last.Start:last.End]; got != tc.wantLast[row] {
					t.Errorf("row %d: last assistant span %q, want %q", row, got, tc.wantLast[row])
				}
				if last.End != len(text) {
					t.Errorf("row %d: last span ends at %d, text is %d bytes", row, last.End, len(text))
				}
				for i, s := range spans {
					if s.Message != i || s.Role != msgs[i].Role() || (i > 0 && s.Start < spans[i-1].End) {
						t.Errorf("row %d: span %d %+v out of order", row, i, s)
					}
				}
				if derr != nil {
					continue // tokenizer.json not at hand: the text goldens above still apply
				}
				T := shape[1]
				var all, lab []int64
				for j := 0; j < T; j++ {
					if mask[row*T+j] != 0 {
						all = append(all, ids[row*T+j])
					}
					if labels[row*T+j] != -100 {
						lab = append(lab, ids[row*T+j])
					}
				}
				want := decode(all)
				if tc.model == "llama" {
					want = strings.Replace(want, "<s> ", "<s>", 1) // SentencePiece prepends "▁" to the text
				}
				if want != text {
					t.Errorf("row %d: rendered text differs from the reference input_ids:\n got %q\nwant %q", row, text, want)
				}
				if got := decode(lab); got != text[last.Start:last.End] {
					t.Errorf("row %d: labelled tokens %q, span %q", row, got, text[last.Start:last.End])
				}
			}
		})
	}
}
