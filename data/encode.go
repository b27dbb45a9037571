package data

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Span marks the bytes of one rendered message in a chat template's output
// (the same shape as chat.Span). Assistant spans cover the answer and its
// end-of-turn text but not the generation prompt before it.
type Span struct {
	Message    int
	Role       string
	Start, End int
	Generation bool
}

// Renderer renders a conversation with a model's chat template and says
// where each message landed in the text.
type Renderer interface {
	Render(msgs []Message, tools json.RawMessage) (text string, spans []Span, err error)
}

// Tokenizer is the part of a tokenizer the pipeline uses. Offsets are byte
// ranges in text; tokens added by the tokenizer itself have empty ranges.
type Tokenizer interface {
	EncodeOffsets(text string, addSpecial bool) (ids []int, offsets [][2]int)
	EOS() int
	PAD() int
}

// EncodeOptions controls tokenization and which tokens are trained.
type EncodeOptions struct {
	CutoffLen     int  `json:"cutoff_len"`                // 0: no limit
	TrainOnPrompt bool `json:"train_on_prompt,omitempty"` // train every token, prompt included
	// LastTurnOnly trains only the final assistant turn.
	LastTurnOnly bool `json:"last_turn_only,omitempty"`
	// MaskHistory (LLaMA-Factory mask_history) trains only the final turn
	// and, when cutting to cutoff_len, keeps the end of the conversation.
	MaskHistory bool `json:"mask_history,omitempty"`
	// NoThinking is LLaMA-Factory's enable_thinking: false for reasoning
	// templates: reasoning in the data is removed from every assistant
	// turn, and the empty <think></think> block a template puts before an
	// answer is part of the prompt (not trained), so the model learns to
	// answer directly after it, as it will be prompted at inference.
	NoThinking bool `json:"no_thinking,omitempty"`
}

// Encoder turns Examples into Samples.
type Encoder struct {
	Tok  Tokenizer
	Tmpl Renderer
	Opts EncodeOptions
	// Fingerprint identifies tokenizer and template for cache keys (e.g. a
	// hash of their files).
	Fingerprint string
}

// Sample is one tokenized training sample. Labels[i] is InputIDs[i] where
// token i is trained and IgnoreIndex elsewhere; they are not shifted (the
// loss shifts). Preference samples carry the rejected answer too.
type Sample struct {
	InputIDs       []int32
	Labels         []int32
	RejectedIDs    []int32
	RejectedLabels []int32
	Source         int // dataset position in the list
	// Undesirable is a KTO sample's label false (stage kto).
	Undesirable bool
	// Cut and CutTrained count the tokens, and the trained tokens among
	// them, that truncation to cutoff_len removed (both rows', for
	// preference samples); the report counts them.
	Cut, CutTrained int
}

// Trained counts labels ≠ IgnoreIndex.
func (s *Sample) Trained() int {
	n := 0
	for _, l := range s.Labels {
		if l != IgnoreIndex {
			n++
		}
	}
	return n
}

// Rendered is an encoded example with its text, for showing masks.
type Rendered struct {
	Text      string
	IDs       []int
	Offsets   [][2]int
	Trained   []bool
	Truncated bool
}

// Reasons an example yields no sample.
const (
	DropNoTrainable = "no trainable token after truncation to cutoff_len"
	DropRender      = "chat template failed"
	// DropPromptFills is a preference pair or KTO answer left without an
	// answer token after the prompt and the answer shared cutoff_len out
	// (ShareCutoff): rare, a very long prompt with a tiny cutoff.
	DropPromptFills = "prompt fills cutoff_len: no answer token left (raise cutoff_len)"
)

// Render encodes ex without cutting it and says which tokens are trained.
// For preference examples it renders the chosen answer.
func (e *Encoder) Render(ex *Example) (Rendered, error) {
	switch ex.Kind {
	case KindText:
		ids, off := e.Tok.EncodeOffsets(ex.Text, true)
		ids = append(ids, e.Tok.EOS())
		off = append(off, [2]int{len(ex.Text), len(ex.Text)})
		tr := make([]bool, len(ids))
		for i := range tr {
			tr[i] = true
		}
		return Rendered{Text: ex.Text, IDs: ids, Offsets: off, Trained: tr}, nil
	case KindPreference:
		msgs := append(append([]Message(nil), ex.Messages...), *ex.Chosen)
		return e.renderChat(msgs, ex.Tools, true)
	}
	// A KTO answer is the last assistant turn; the turns before it are its
	// prompt, as in LLaMA-Factory's feedback data.
	return e.renderChat(ex.Messages, ex.Tools, ex.KTO || e.Opts.LastTurnOnly || e.Opts.MaskHistory)
}

func (e *Encoder) renderChat(msgs []Message, tools json.RawMessage, lastOnly bool) (Rendered, error) {
	if e.Opts.NoThinking {
		msgs = withoutThoughts(msgs)
	}
	text, spans, err := e.Tmpl.Render(msgs, tools)
	if err != nil {
		return Rendered{}, err
	}
	if e.Opts.NoThinking {
		for i, s := range spans {
			if s.Role == RoleAssistant && strings.HasPrefix(text[s.Start:s.End], emptyThought) {
				spans[i].Start += len(emptyThought)
			}
		}
	}
	ids, off := e.Tok.EncodeOffsets(text, false)
	last := -1
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleAssistant {
			last = i
			break
		}
	}
	var trained []Span
	for _, s := range spans {
		if s.Role != RoleAssistant && !s.Generation {
			continue
		}
		if lastOnly && s.Message != last {
			continue
		}
		if s.Message >= 0 && s.Message < len(msgs) && msgs[s.Message].NoTrain {
			continue
		}
		trained = append(trained, s)
	}
	tr := make([]bool, len(ids))
	for i, o := range off {
		if e.Opts.TrainOnPrompt {
			tr[i] = true
			continue
		}
		// A token belongs to the span its first byte is in; special tokens
		// the tokenizer adds (empty range at 0) belong to none.
		for _, s := range trained {
			if o[0] >= s.Start && o[0] < s.End && o[1] > o[0] {
				tr[i] = true
				break
			}
		}
	}
	return Rendered{Text: text, IDs: ids, Offsets: off, Trained: tr}, nil
}

// Encode turns ex into samples: one for chat and preference examples,
// possibly several for long plain text (cut into cutoff_len blocks). It
// returns a drop reason instead when nothing trainable is left.
func (e *Encoder) Encode(ex *Example, source int) ([]Sample, string, error) {
	r, err := e.Render(ex)
	if err != nil {
		return nil, DropRender, fmt.Errorf("%s: %w", ex.Loc, err)
	}
	cut := e.Opts.CutoffLen
	if ex.Kind == KindText {
		var out []Sample
		ids, lab := toSample(r)
		step := len(ids)
		if cut > 0 {
			step = cut
		}
		for lo := 0; lo < len(ids); lo += step {
			hi := min(lo+step, len(ids))
			if hi-lo < 2 && lo > 0 {
				break // a lone leftover token teaches nothing once shifted
			}
			out = append(out, Sample{InputIDs: ids[lo:hi], Labels: lab[lo:hi], Source: source})
		}
		return out, "", nil
	}
	full, fullLab := toSample(r)
	if ex.Kind == KindPreference {
		return e.encodePair(ex, full, fullLab, source)
	}
	if ex.KTO {
		ids, lab := cutPrompted(full, fullLab, e.Opts.CutoffLen, -1)
		s := Sample{InputIDs: ids, Labels: lab, Source: source, Undesirable: ex.Undesirable}
		s.countCut(fullLab, lab, len(full)-len(ids))
		if !anyTrained(fullLab) {
			return nil, DropNoTrainable, nil
		}
		if !anyTrained(lab) {
			return nil, DropPromptFills, nil
		}
		return []Sample{s}, "", nil
	}
	ids, lab := e.cut(full, fullLab)
	s := Sample{InputIDs: ids, Labels: lab, Source: source}
	s.countCut(fullLab, lab, len(full)-len(ids))
	if !anyTrained(s.Labels) {
		return nil, DropNoTrainable, nil
	}
	return []Sample{s}, "", nil
}

// encodePair adds the rejected answer to the chosen sequence ids/lab and
// cuts both to cutoff_len as LLaMA-Factory's pairwise processor does: the
// prompt and the longer answer share cutoff_len (ShareCutoff), the prompt
// keeps its first tokens and each answer its first, so a long prompt is
// shortened instead of the pair being lost.
func (e *Encoder) encodePair(ex *Example, ids, lab []int32, source int) ([]Sample, string, error) {
	msgs := append(append([]Message(nil), ex.Messages...), *ex.Rejected)
	rr, err := e.renderChat(msgs, ex.Tools, true)
	if err != nil {
		return nil, DropRender, fmt.Errorf("%s: rejected: %w", ex.Loc, err)
	}
	rids, rlab := toSample(rr)
	// The answers are measured from the chosen row's prompt, as
	// LLaMA-Factory encodes the prompt once for both.
	p := answerStart(lab)
	target := max(len(ids)-p, len(rids)-answerStart(rlab))
	s := Sample{Source: source}
	s.InputIDs, s.Labels = cutPrompted(ids, lab, e.Opts.CutoffLen, target)
	s.RejectedIDs, s.RejectedLabels = cutPrompted(rids, rlab, e.Opts.CutoffLen, target)
	s.countCut(lab, s.Labels, len(ids)-len(s.InputIDs))
	s.countCut(rlab, s.RejectedLabels, len(rids)-len(s.RejectedIDs))
	if !anyTrained(s.RejectedLabels) || !anyTrained(s.Labels) {
		return nil, DropPromptFills, nil
	}
	return []Sample{s}, "", nil
}

// countCut adds to s's truncation counts a row that lost cut tokens, from
// labels full to labels kept.
func (s *Sample) countCut(full, kept []int32, cut int) {
	if cut > 0 {
		s.Cut += cut
		s.CutTrained += countTrained(full) - countTrained(kept)
	}
}

// ShareCutoff shares cutoff tokens out between a prompt of source tokens and
// an answer of target tokens, as LLaMA-Factory's infer_seqlen does for its
// pairwise and feedback (KTO) data: an answer shorter than half the cutoff
// is kept whole and the prompt cut; else a prompt shorter than half is kept
// whole and the answer cut; else both are cut in proportion to their
// lengths. It returns the kept lengths (their sum is at most cutoff).
func ShareCutoff(source, target, cutoff int) (int, int) {
	var maxTarget int
	switch {
	case 2*target < cutoff:
		maxTarget = cutoff
	case 2*source < cutoff:
		maxTarget = cutoff - source
	default:
		// Python's int(cutoff * (target / (source + target))): the same
		// float64 operations, truncated toward zero.
		maxTarget = int(float64(cutoff) * (float64(target) / float64(source+target)))
	}
	t := min(maxTarget, target)
	return min(max(cutoff-t, 0), source), t
}

// cutPrompted cuts a prompt-and-answer row (the answer begins at its first
// trained token) to cutoff tokens with ShareCutoff, keeping the first
// tokens of each part. target is the answer length to share out, or −1 for
// this row's own (a pair shares out its longer answer for both rows).
func cutPrompted(ids, lab []int32, cutoff, target int) ([]int32, []int32) {
	p := answerStart(lab)
	if target < 0 {
		target = len(ids) - p
	}
	if cutoff <= 0 || p+target <= cutoff {
		return ids, lab
	}
	src, tgt := ShareCutoff(p, target, cutoff)
	tgt = min(tgt, len(ids)-p)
	out := make([]int32, 0, src+tgt)
	out = append(append(out, ids[:src]...), ids[p:p+tgt]...)
	ol := make([]int32, 0, src+tgt)
	ol = append(append(ol, lab[:src]...), lab[p:p+tgt]...)
	return out, ol
}

func (e *Encoder) cut(ids, lab []int32) ([]int32, []int32) {
	c := e.Opts.CutoffLen
	if c <= 0 || len(ids) <= c {
		return ids, lab
	}
	if e.Opts.MaskHistory {
		return ids[len(ids)-c:], lab[len(lab)-c:]
	}
	return ids[:c], lab[:c]
}

func toSample(r Rendered) (ids, labels []int32) {
	ids = make([]int32, len(r.IDs))
	labels = make([]int32, len(r.IDs))
	for i, id := range r.IDs {
		ids[i] = int32(id)
		labels[i] = IgnoreIndex
		if r.Trained[i] {
			labels[i] = int32(id)
		}
	}
	return ids, labels
}

func countTrained(l []int32) int {
	n := 0
	for _, v := range l {
		if v != IgnoreIndex {
			n++
		}
	}
	return n
}

func anyTrained(l []int32) bool {
	for _, v := range l {
		if v != IgnoreIndex {
			return true
		}
	}
	return false
}

// emptyThought is the empty reasoning block of Qwen3-style templates
// (LLaMA-Factory's thought words with nothing between them).
const emptyThought = "<think>\n\n</think>\n\n"

var thoughtRE = regexp.MustCompile(`(?s)<think>.*?</think>`)

// withoutThoughts removes reasoning from every assistant turn, as
// LLaMA-Factory's reasoning templates do when thinking is off: separate
// reasoning fields and <think>…</think> blocks left in the content alike.
func withoutThoughts(msgs []Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		if m.Role == RoleAssistant {
			m.Reasoning = ""
			if strings.Contains(m.Content, thinkOpen) {
				m.Content = strings.TrimLeft(thoughtRE.ReplaceAllString(m.Content, ""), "\n")
			}
		}
		out[i] = m
	}
	return out
}
