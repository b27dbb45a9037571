package tokenizer

import "unicode"

// postProcessor adds special tokens around an encoding and adjusts offsets.
type postProcessor interface {
	process(t *Tokenizer, e *encoding, addSpecial bool)
}

type seqPost []postProcessor

func (s seqPost) process(t *Tokenizer, e *encoding, addSpecial bool) {
	for _, p := range s {
		p.process(t, e, addSpecial)
	}
}

// templateItem is one element of a TemplateProcessing "single" template:
// either the sequence itself or the ids of a special token.
type templateItem struct {
	sequence bool
	ids      []int
}

type templatePost struct{ single []templateItem }

func (p templatePost) process(_ *Tokenizer, e *encoding, addSpecial bool) {
	if !addSpecial {
		return
	}
	ids := make([]int, 0, len(e.ids)+4)
	var offs [][2]int
	for _, it := range p.single {
		if it.sequence {
			ids = append(ids, e.ids...)
			if e.track {
				offs = append(offs, e.offs...)
			}
			continue
		}
		ids = append(ids, it.ids...)
		if e.track {
			for range it.ids {
				offs = append(offs, [2]int{0, 0})
			}
		}
	}
	e.ids, e.offs = ids, offs
}

// wrapPost is RobertaProcessing/BertProcessing for single sequences:
// cls, the sequence, sep; Roberta also trims offsets like ByteLevel.
type wrapPost struct {
	cls, sep       int
	trimOffsets    bool
	addPrefixSpace bool
}

func (p wrapPost) process(t *Tokenizer, e *encoding, addSpecial bool) {
	if p.trimOffsets && e.track {
		trimOffsets(t, e, p.addPrefixSpace)
	}
	if addSpecial {
		templatePost{single: []templateItem{{ids: []int{p.cls}}, {sequence: true}, {ids: []int{p.sep}}}}.process(t, e, true)
	}
}

// byteLevelPost is the ByteLevel post-processor: it only trims offsets.
type byteLevelPost struct {
	trimOffsets    bool
	addPrefixSpace bool
}

func (p byteLevelPost) process(t *Tokenizer, e *encoding, _ bool) {
	if p.trimOffsets && e.track {
		trimOffsets(t, e, p.addPrefixSpace)
	}
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
