package tokenizer

import "unicode"

// postProcessor adds special tokens around one encoding, or a pair of them,
// and adjusts offsets. It returns the encodings that remain (a template
// merges a pair into one); the caller concatenates them.
type postProcessor interface {
	process(t *Tokenizer, encs []*encoding, addSpecial bool) []*encoding
}

type seqPost []postProcessor

func (s seqPost) process(t *Tokenizer, encs []*encoding, addSpecial bool) []*encoding {
	for _, p := range s {
		encs = p.process(t, encs, addSpecial)
	}
	return encs
}

// templateItem is one element of a TemplateProcessing template: a sequence
// (seq 0 is A, 1 is B) or the ids of a special token.
type templateItem struct {
	sequence bool
	seq      int
	ids      []int
}

type templatePost struct{ single, pair []templateItem }

func (p templatePost) process(_ *Tokenizer, encs []*encoding, addSpecial bool) []*encoding {
	if !addSpecial {
		return encs
	}
	tmpl := p.single
	if len(encs) == 2 && p.pair != nil {
		tmpl = p.pair
	}
	track := encs[0].track
	out := &encoding{track: track, ids: make([]int, 0, len(encs[0].ids)+4)}
	for _, it := range tmpl {
		if it.sequence {
			if it.seq < len(encs) {
				out.ids = append(out.ids, encs[it.seq].ids...)
				if track {
					out.offs = append(out.offs, encs[it.seq].offs...)
				}
			}
			continue
		}
		out.ids = append(out.ids, it.ids...)
		if track {
			for range it.ids {
				out.offs = append(out.offs, [2]int{0, 0})
			}
		}
	}
	if len(encs) == 2 && p.pair == nil {
		// No pair template: the second sequence follows as it is.
		out.ids = append(out.ids, encs[1].ids...)
		out.offs = append(out.offs, encs[1].offs...)
	}
	return []*encoding{out}
}

// wrapPost is RobertaProcessing/BertProcessing: cls A sep, and for pairs
// cls A sep B sep (Bert) or cls A sep sep B sep (Roberta). Roberta also
// trims offsets like ByteLevel.
type wrapPost struct {
	cls, sep       int
	roberta        bool
	trimOffsets    bool
	addPrefixSpace bool
}

func (p wrapPost) process(t *Tokenizer, encs []*encoding, addSpecial bool) []*encoding {
	if p.trimOffsets && encs[0].track {
		for _, e := range encs {
			trimOffsets(t, e, p.addPrefixSpace)
		}
	}
	if !addSpecial {
		return encs
	}
	cls, sep := templateItem{ids: []int{p.cls}}, templateItem{ids: []int{p.sep}}
	a, b := templateItem{sequence: true}, templateItem{sequence: true, seq: 1}
	tp := templatePost{single: []templateItem{cls, a, sep}, pair: []templateItem{cls, a, sep, b, sep}}
	if p.roberta {
		tp.pair = []templateItem{cls, a, sep, sep, b, sep}
	}
	return tp.process(t, encs, true)
}

// byteLevelPost is the ByteLevel post-processor: it only trims offsets.
type byteLevelPost struct {
	trimOffsets    bool
	addPrefixSpace bool
}

func (p byteLevelPost) process(t *Tokenizer, encs []*encoding, _ bool) []*encoding {
	for _, e := range encs {
		if p.trimOffsets && e.track {
			trimOffsets(t, e, p.addPrefixSpace)
		}
	}
	return encs
}

// trimOffsets drops the leading and trailing spaces of each token from its
// offsets (HF's byte_level::process_offsets).
func trimOffsets(t *Tokenizer, e *encoding, addPrefixSpace bool) {
	space := byteToRune[' ']
	isSpace := func(r rune) bool { return r == space || unicode.IsSpace(r) }
	for k, id := range e.ids {
		rs := []rune(t.IDToToken(id))
		lead, trail := 0, 0
		for lead < len(rs) && isSpace(rs[lead]) {
			lead++
		}
		for trail < len(rs) && isSpace(rs[len(rs)-1-trail]) {
			trail++
		}
		o := &e.offs[k]
		if lead > 0 {
			if (k == 0 || o[0] == 0) && addPrefixSpace && lead == 1 {
				lead = 0
			}
			o[0] = min(o[0]+lead, o[1])
		}
		if trail > 0 && o[1] >= trail {
			o[1] = max(o[1]-trail, o[0])
		}
	}
}
