// Package tokenizer reproduces Hugging Face tokenizers (tokenizer.json plus
// transformers' tokenizer_config.json) and llama.cpp's GGUF vocabularies,
// id for id: added tokens, normalizers, pre-tokenizers, BPE, post-processors
// and decoders.
package tokenizer

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Tokenizer encodes text to token ids and back. It is safe for concurrent use.
type Tokenizer struct {
	model      model
	bpe        *bpeModel // nil for the llama.cpp SentencePiece model
	normalizer normalizer
	pre        preTokenizer
	post       postProcessor
	dec        decoder

	rawSplit  *addedMatcher // added tokens matched in the original text
	normSplit *addedMatcher // added tokens matched after normalization

	ids     map[string]int // every token string (model and added) to its id
	tokens  []string       // id to token string; "" where no token has the id
	added   map[int]*AddedToken
	special []bool // by id: skipped by Decode(skipSpecial) and reported by IsSpecial

	bosTok, eosTok, padTok, unkTok string
	cleanUp                        bool

	caches sync.Pool // *wordCache, one per concurrent encode
}

// Encode returns the token ids of text. With addSpecial the post-processor's
// special tokens (BOS and the like) are added, as transformers'
// add_special_tokens.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids, _ := t.encode(text, addSpecial, false)
	return ids
}

// EncodeOffsets is Encode plus, for every token, the byte range of the
// original text it came from (as Hugging Face's offsets, in bytes). Tokens
// added by the post-processor get [0, 0].
func (t *Tokenizer) EncodeOffsets(text string, addSpecial bool) (ids []int, offsets [][2]int) {
	return t.encode(text, addSpecial, true)
}

// EncodeBatch encodes texts in parallel.
func (t *Tokenizer) EncodeBatch(texts []string, addSpecial bool) [][]int {
	out := make([][]int, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(texts) {
					return
				}
				out[k] = t.Encode(texts[k], addSpecial)
			}
		}()
	}
	wg.Wait()
	return out
}

type encoding struct {
	ids   []int
	offs  [][2]int
	track bool
}

func (e *encoding) add(id int, lo, hi int) {
	e.ids = append(e.ids, id)
	if e.track {
		e.offs = append(e.offs, [2]int{lo, hi})
	}
}

// EncodePair encodes two texts as one input (a question and a passage, a
// premise and a hypothesis): with addSpecial the post-processor's pair
// template places the special tokens (BERT: [CLS] a [SEP] b [SEP]);
// without it, or with no post-processor, b's ids follow a's.
func (t *Tokenizer) EncodePair(a, b string, addSpecial bool) []int {
	encs := []*encoding{t.encodeOne(a, false), t.encodeOne(b, false)}
	return t.finish(encs, addSpecial, false).ids
}

func (t *Tokenizer) encode(text string, addSpecial, track bool) ([]int, [][2]int) {
	e := t.finish([]*encoding{t.encodeOne(text, track)}, addSpecial, track)
	return e.ids, e.offs
}

// finish runs the post-processor and concatenates what it returns.
func (t *Tokenizer) finish(encs []*encoding, addSpecial, track bool) *encoding {
	if t.post != nil {
		encs = t.post.process(t, encs, addSpecial)
	}
	if len(encs) == 1 {
		return encs[0]
	}
	out := &encoding{track: track}
	for _, e := range encs {
		out.ids = append(out.ids, e.ids...)
		out.offs = append(out.offs, e.offs...)
	}
	return out
}

// encodeOne runs everything before the post-processor.
func (t *Tokenizer) encodeOne(text string, track bool) *encoding {
	e := &encoding{track: track, ids: make([]int, 0, len(text)/3+4)}
	if track {
		e.offs = make([][2]int, 0, cap(e.ids))
	}
	var cache *wordCache
	if _, ok := t.model.(segmenter); ok {
		cache, _ = t.caches.Get().(*wordCache)
		if cache == nil {
			cache = newWordCache()
		}
		defer t.caches.Put(cache)
	}
	var buf []tok
	var emitPiece func(p nstr)
	emit := func(p nstr) {
		if sg, ok := t.model.(segmenter); ok && len(p.s) > segmentMin && sg.canSegment() {
			// A long piece (a whole text without pre-tokenizer) goes to
			// the model part by part: same tokens, word-sized merges.
			e.ids = slices.Grow(e.ids, len(p.s)/2)
			if track {
				e.offs = slices.Grow(e.offs, len(p.s)/2)
			}
			sg.forSegments(p.s, func(i, j int) { emitPiece(p.slice(i, j)) })
			return
		}
		emitPiece(p)
	}
	emitPiece = func(p nstr) {
		buf = t.model.tokenize(p.s, buf[:0], cache)
		for _, k := range buf {
			if track {
				e.add(int(k.id), int(p.align[k.i].lo), int(p.align[k.j-1].hi))
			} else {
				e.ids = append(e.ids, int(k.id))
			}
		}
	}
	t.rawSplit.split(text, func(i, j int, at *AddedToken) {
		if at != nil {
			e.add(at.ID, i, j)
			return
		}
		n := newNstr(text[i:j], i, track)
		if t.normalizer != nil {
			n = t.normalizer.normalize(n)
		}
		t.normSplit.split(n.s, func(a, b int, at *AddedToken) {
			if at != nil {
				lo, hi := 0, 0
				if track {
					lo, hi = int(n.align[a].lo), int(n.align[b-1].hi)
				}
				e.add(at.ID, lo, hi)
				return
			}
			p := n.slice(a, b)
			if t.pre != nil {
				t.pre.split(p, emit)
			} else if p.s != "" {
				emit(p)
			}
		})
	})
	return e
}

// Decode turns ids back into text as transformers' decode does (unknown ids
// are dropped). With skipSpecial, special tokens are left out.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
			continue
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	var s string
	if t.dec != nil {
		s = strings.Join(t.dec.decodeChain(toks), "")
	} else {
		s = strings.Join(toks, " ")
	}
	if t.cleanUp {
		s = cleanUpTokenization(s)
	}
	return s
}

// TokenToID returns the id of a token string (model vocabulary or added).
func (t *Tokenizer) TokenToID(s string) (int, bool) {
	id, ok := t.ids[s]
	return id, ok
}

// IDToToken returns the token string of id, or "" when there is none.
func (t *Tokenizer) IDToToken(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// VocabSize is the largest id plus one, added tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// IsSpecial reports whether id is a special token (skipped by
// Decode(ids, true)).
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// AddedTokens lists the tokens matched before the model, in id order.
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, 0, len(t.added))
	for id := range t.tokens {
		if a, ok := t.added[id]; ok {
			out = append(out, *a)
		}
	}
	return out
}

func (t *Tokenizer) lookup(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	return t.TokenToID(s)
}

// BOS returns the beginning-of-sequence token id, if the tokenizer has one.
func (t *Tokenizer) BOS() (int, bool) { return t.lookup(t.bosTok) }

// EOS returns the end-of-sequence token id.
func (t *Tokenizer) EOS() (int, bool) { return t.lookup(t.eosTok) }

// PAD returns the padding token id.
func (t *Tokenizer) PAD() (int, bool) { return t.lookup(t.padTok) }

// UNK returns the unknown token id.
func (t *Tokenizer) UNK() (int, bool) { return t.lookup(t.unkTok) }

// BOSToken returns the beginning-of-sequence token string ("" if none).
func (t *Tokenizer) BOSToken() string { return t.bosTok }

// EOSToken returns the end-of-sequence token string.
func (t *Tokenizer) EOSToken() string { return t.eosTok }

// PADToken returns the padding token string.
func (t *Tokenizer) PADToken() string { return t.padTok }

// UNKToken returns the unknown token string.
func (t *Tokenizer) UNKToken() string { return t.unkTok }
