package infer

import (
	"strconv"
	"strings"
	"sync"

	"gotune/constrain"
	"gotune/tokenizer"
)

// vocabs holds one constrain.Vocab per tokenizer: building it decodes every
// token once, so engines sharing a tokenizer (adapters, replicas) share it.
var vocabs sync.Map // *tokenizer.Tokenizer -> func() *constrain.Vocab

// Vocab returns the token byte table for constrained decoding, built on
// first use.
func (e *Engine) Vocab() *constrain.Vocab {
	f, _ := vocabs.LoadOrStore(e.Tok, sync.OnceValue(func() *constrain.Vocab { return buildVocab(e.Tok) }))
	return f.(func() *constrain.Vocab)()
}

// buildVocab finds the bytes each token adds to decoded text. A token is
// decoded after an anchor token, as it would be inside a reply, so that a
// SentencePiece word keeps its leading space. Tokens that are part of a
// UTF-8 character decode to U+FFFD; their bytes come from the byte-level
// alphabet or a <0xNN> byte-fallback piece instead. Special tokens never
// appear in a constrained output, except as stops (handled apart).
func buildVocab(tok *tokenizer.Tokenizer) *constrain.Vocab {
	anchor := tok.Encode("a", false)
	head := tok.Decode(anchor, true)
	ids := append(append([]int(nil), anchor...), 0)
	return constrain.NewVocab(tok.VocabSize(), func(id int) ([]byte, bool) {
		if tok.IsSpecial(id) {
			return nil, false
		}
		piece := tok.IDToToken(id)
		if piece == "" {
			return nil, false
		}
		ids[len(ids)-1] = id
		text, ok := strings.CutPrefix(tok.Decode(ids, true), head)
		if !ok {
			text = tok.Decode(ids[len(ids)-1:], true)
		}
		if !strings.Contains(text, "\uFFFD") || strings.Contains(piece, "\uFFFD") {
			return []byte(text), true
		}
		if b, ok := fallbackByte(piece); ok {
			return []byte{b}, true
		}
		if b, ok := byteLevel(piece); ok {
			return b, true
		}
		return nil, false
	})
}

func fallbackByte(piece string) (byte, bool) {
	if len(piece) != 6 || !strings.HasPrefix(piece, "<0x") || piece[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(piece[3:5], 16, 8)
	return byte(v), err == nil
}

// gpt2Bytes maps GPT-2's byte-level alphabet back to bytes.
var gpt2Bytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	n := rune(0)
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			m[rune(b)] = byte(b)
		} else {
			m[256+n] = byte(b)
			n++
		}
	}
	return m
}()

func byteLevel(piece string) ([]byte, bool) {
	out := make([]byte, 0, len(piece))
	for _, r := range piece {
		b, ok := gpt2Bytes[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}
