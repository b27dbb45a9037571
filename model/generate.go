package model

import (
	"fmt"

	"gotune/compute/cpu"
	"gotune/nn"
)

// Session runs one sequence incrementally with a key/value cache: each Feed
// processes only the new tokens, attending to everything cached before them.
// It runs the same block as training (Workspace.forwardLayer), so a model
// family or method that trains also decodes.
type Session struct {
	m      *Model
	Len    int // positions filled (prefix and virtual tokens included)
	prefix int
	cache  kvCache
	ws     *Workspace
	// virt and fed are the virtual tokens' embeddings and the ids fed so
	// far, kept only for longrope models: past the pretrained context the
	// frequencies of every position change, and with them every layer's
	// cached keys and values, so the session runs the sequence again.
	virt []float32
	fed  []int32
}

// kvCache holds the rotated keys and values of every position its
// sequences have seen: per layer [rows, max, KVDim], each sequence's
// positions contiguous.
type kvCache struct {
	k, v [][]float32
	max  int
	lens []int // positions filled, per sequence
	// active maps the rows of the batch being decoded to sequences.
	active []int
}

func newKVCache(c *Config, rows, maxLen int) kvCache {
	kc := kvCache{max: maxLen, lens: make([]int, rows)}
	for range c.Layers {
		kc.k = append(kc.k, make([]float32, rows*maxLen*c.KVDim()))
		kc.v = append(kc.v, make([]float32, rows*maxLen*c.KVDim()))
	}
	return kc
}

// decodeWorkspace is a workspace that decodes into kc: no activations are
// kept for a backward pass, so one set of buffers serves every layer.
func (m *Model) decodeWorkspace(kc *kvCache) *Workspace {
	return &Workspace{m: m, Checkpoint: true, cache: kc}
}

// NewSession allocates a cache for up to maxLen positions, filling it with
// the KV prefix and virtual tokens of any attached prompt method.
func (m *Model) NewSession(maxLen int) *Session {
	s := &Session{m: m, cache: newKVCache(m.Cfg, 1, maxLen)}
	s.ws = m.decodeWorkspace(&s.cache)
	s.Reset()
	return s
}

// Reset empties the cache (keeping any prefix).
func (s *Session) Reset() {
	s.cache.lens[0] = 0
	if len(s.m.Layers) > 0 && s.m.Layers[0].Prefix != nil {
		kd := s.m.Cfg.KVDim()
		for i, l := range s.m.Layers {
			pk, pv := l.Prefix.KV(i)
			copy(s.cache.k[i], pk)
			copy(s.cache.v[i], pv)
			s.cache.lens[0] = len(pk) / kd
		}
	}
	s.prefix, s.Len = s.cache.lens[0], s.cache.lens[0]
	s.virt, s.fed = nil, s.fed[:0]
	if s.m.Input != nil {
		p := s.m.Input.Virtual()
		virt := make([]float32, p*s.m.Cfg.Hidden)
		s.m.Input.Embed(virt, 1)
		if s.m.Cfg.Rope.Type == "longrope" {
			s.virt = virt
		}
		s.ws.decode(nil, virt, []int{0}, p)
		s.Len = s.cache.lens[0]
	}
}

// Feed appends tokens and returns the logits after the last one ([Vocab],
// reused by the next call).
func (s *Session) Feed(ids []int32) ([]float32, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("feed: no tokens")
	}
	if s.Len+len(ids) > s.cache.max {
		return nil, fmt.Errorf("feed: %d cached + %d new tokens exceed the session's %d positions", s.Len, len(ids), s.cache.max)
	}
	if err := checkIDs(ids, s.m.Cfg.Vocab); err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	if c := s.m.Cfg; c.Rope.Type == "longrope" {
		if c.ropeLong(s.Len+len(ids)) && !c.ropeLong(s.Len) && s.Len > s.prefix {
			// Crossing into the long factors: everything again, in one pass.
			s.fed = append(s.fed, ids...)
			s.cache.lens[0] = s.prefix
			if s.virt != nil {
				s.ws.decode(nil, s.virt, []int{0}, len(s.virt)/c.Hidden)
			}
			logits := s.ws.decode(s.fed, nil, []int{0}, len(s.fed))
			s.Len = s.cache.lens[0]
			return logits, nil
		}
		s.fed = append(s.fed, ids...)
	}
	logits := s.ws.decode(ids, nil, []int{0}, len(ids))
	s.Len = s.cache.lens[0]
	return logits, nil
}

func checkIDs(ids []int32, vocab int) error {
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("token id %d outside the vocabulary [0, %d)", id, vocab)
		}
	}
	return nil
}

// GroupSession decodes several sequences that share a prompt (a GRPO group,
// or n samples of one request): the prompt runs once and its key/value
// cache is copied to every sequence, then each Step advances the live
// sequences by one token together — the linear layers see one matrix of
// rows instead of a vector per sequence, which is where single-sequence
// decoding spends its time. It runs the training block as Session does.
type GroupSession struct {
	m     *Model
	Lens  []int // positions filled per sequence
	cache kvCache
	ws    *Workspace
}

// NewGroupSession allocates caches for n sequences of up to maxLen
// positions each. Prompt-learning methods (prefixes, virtual tokens) are
// not supported here.
func (m *Model) NewGroupSession(n, maxLen int) (*GroupSession, error) {
	if m.extraPositions() > 0 {
		return nil, fmt.Errorf("group decoding: prefix and prompt tuning are not supported")
	}
	if n <= 0 {
		return nil, fmt.Errorf("group decoding: %d sequences", n)
	}
	if c := m.Cfg; c.Rope.Type == "longrope" && c.ropeLong(maxLen) {
		return nil, fmt.Errorf("group decoding: %d positions pass longrope's original context of %d (the long factors would change every cached key); keep prompt and completion within it", maxLen, c.Rope.OriginalMaxPos)
	}
	g := &GroupSession{m: m, cache: newKVCache(m.Cfg, n, maxLen)}
	g.Lens = g.cache.lens
	g.ws = m.decodeWorkspace(&g.cache)
	return g, nil
}

// Cap is the positions each sequence can hold: a session may be reused for
// any prompt and completion that fit (Prompt starts it over).
func (g *GroupSession) Cap() int { return g.cache.max }

// Rows is the number of sequences the session holds.
func (g *GroupSession) Rows() int { return len(g.Lens) }

// Prompt runs the shared prompt once, copies its cache to every sequence
// and returns the logits after its last token ([Vocab], reused).
func (g *GroupSession) Prompt(ids []int32) ([]float32, error) {
	rows := make([]int, len(g.Lens))
	for i := range rows {
		rows[i] = i
	}
	return g.PromptRows(ids, rows)
}

// PromptRows starts the listed sequences from one prompt (run once, its
// cache copied to each): a session may decode the groups of several prompts
// together. It returns the logits after the prompt ([Vocab], reused by the
// next call).
func (g *GroupSession) PromptRows(ids []int32, rows []int) ([]float32, error) {
	if len(ids) == 0 || len(ids) >= g.cache.max {
		return nil, fmt.Errorf("group decoding: the prompt's %d tokens leave no room in %d positions", len(ids), g.cache.max)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("group decoding: no sequences to start")
	}
	for _, r := range rows {
		if r < 0 || r >= len(g.Lens) {
			return nil, fmt.Errorf("group decoding: row %d of %d", r, len(g.Lens))
		}
	}
	if err := checkIDs(ids, g.m.Cfg.Vocab); err != nil {
		return nil, fmt.Errorf("group decoding: %w", err)
	}
	first := rows[0]
	g.cache.lens[first] = 0
	logits := g.ws.decode(ids, nil, []int{first}, len(ids))
	kd := g.m.Cfg.KVDim()
	n, stride := len(ids)*kd, g.cache.max*kd
	for li := range g.m.Layers {
		k, v := g.cache.k[li], g.cache.v[li]
		for _, r := range rows[1:] {
			copy(k[r*stride:r*stride+n], k[first*stride:first*stride+n])
			copy(v[r*stride:r*stride+n], v[first*stride:first*stride+n])
		}
	}
	for _, r := range rows {
		g.Lens[r] = len(ids)
	}
	return logits, nil
}

// Step appends ids[i] to sequence rows[i] and returns the logits after it,
// [len(rows)·Vocab] (reused by the next call).
func (g *GroupSession) Step(rows []int, ids []int32) ([]float32, error) {
	n := len(rows)
	if n == 0 || len(ids) != n {
		return nil, fmt.Errorf("group step: %d rows, %d tokens", n, len(ids))
	}
	seen := map[int]bool{}
	for _, r := range rows {
		if r < 0 || r >= len(g.Lens) || seen[r] {
			return nil, fmt.Errorf("group step: row %d of %d (each at most once)", r, len(g.Lens))
		}
		seen[r] = true
		if g.Lens[r]+1 > g.cache.max {
			return nil, fmt.Errorf("group step: sequence %d is full (%d positions)", r, g.cache.max)
		}
	}
	if err := checkIDs(ids, g.m.Cfg.Vocab); err != nil {
		return nil, fmt.Errorf("group step: %w", err)
	}
	return g.ws.decode(ids, nil, rows, 1), nil
}

// decode runs t new positions for each of the sequences rows (their tokens
// ids, row after row, or, when ids is nil, embeddings [len(rows)·t, Hidden])
// through the cache and returns the logits after each row's last position
// ([len(rows)·Vocab], reused by the next call).
func (w *Workspace) decode(ids []int32, emb []float32, rows []int, t int) []float32 {
	m, c, kc := w.m, w.m.Cfg, w.cache
	h, b := c.Hidden, len(rows)
	n := b * t
	kc.active = rows
	w.B, w.T, w.P, w.N = b, t, 0, n
	w.seg = nil
	w.ids, w.labels, w.mask, w.pos = grow(w.ids, n), grow(w.labels, n), grow(w.mask, n), grow(w.pos, n)
	for r, seq := range rows {
		for i := range t {
			j := r*t + i
			w.ids[j], w.labels[j], w.mask[j], w.pos[j] = 0, IgnoreIndex, 1, int32(kc.lens[seq]+i)
		}
	}
	w.size(t)
	if c.Experts > 0 {
		w.aux.reset(c.Experts) // routing statistics nobody reads here
	}
	x := w.stream[0]
	if ids != nil {
		copy(w.ids, ids)
		for i, id := range ids {
			copy(x[i*h:(i+1)*h], m.Embed.Data[int(id)*h:(int(id)+1)*h])
		}
		scaleEmbeddings(c, x[:n*h])
	} else {
		copy(x, emb)
		scaleVirtual(c, x[:n*h])
	}
	for _, l := range m.Layers {
		w.forwardLayer(l)
	}
	for _, seq := range rows {
		kc.lens[seq] += t
	}
	// The head on each row's last position only.
	out := w.stream[len(m.Layers)]
	for r := range b {
		copy(w.xf[r*h:(r+1)*h], out[(r*t+t-1)*h:(r*t+t)*h])
	}
	nn.RMSNorm(w.xf[:b*h], w.rstdf[:b], w.xf[:b*h], w.nw.of(m.Norm), b, h, c.RMSNormEps)
	w.headKept = false // the logits buffer is this step's now
	w.logits = grow(w.logits, b*c.Vocab)
	cpu.Sgemm(false, true, b, c.Vocab, h, 1, w.xf[:b*h], h, m.Head.Data, h, 0, w.logits, c.Vocab)
	w.capLogits(w.logits, false)
	return w.logits
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Greedy decodes n tokens after prompt, always taking the most likely one.
// stop, when non-nil, ends generation early on any of its ids.
func (m *Model) Greedy(prompt []int32, n int, stop func(int32) bool) ([]int32, error) {
	s := m.NewSession(len(prompt) + n + m.extraPositions())
	logits, err := s.Feed(prompt)
	if err != nil {
		return nil, err
	}
	var out []int32
	for len(out) < n {
		next := int32(Argmax(logits))
		out = append(out, next)
		if stop != nil && stop(next) {
			break
		}
		if len(out) == n {
			break
		}
		if logits, err = s.Feed([]int32{next}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// extraPositions counts cache positions taken by prefixes and virtual tokens.
func (m *Model) extraPositions() int {
	n := 0
	if len(m.Layers) > 0 && m.Layers[0].Prefix != nil {
		n += m.Layers[0].Prefix.Len()
	}
	if m.Input != nil {
		n += m.Input.Virtual()
	}
	return n
}
