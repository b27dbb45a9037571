package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"gotune/chat"
	"gotune/compute"
	"gotune/export"
	"gotune/infer"
)

// engineCache keeps the two most recently used models loaded, so that
// each chat message does not load its model again and base and fine-tune
// can answer side by side; generation is serialized (mu) because an
// engine holds one KV cache.
type engineCache struct {
	mu      sync.Mutex
	entries []cachedEngine // most recent first
}

type cachedEngine struct {
	key string
	e   *infer.Engine
}

const cachedEngines = 2

// get returns the engine of model and adapter, loading it onto a backend
// from open when it is not cached.
func (c *engineCache) get(model, adapter string, open func() (compute.Backend, error)) (*infer.Engine, error) {
	key := model + "\x00" + adapter
	for i, ce := range c.entries {
		if ce.key == key {
			copy(c.entries[1:i+1], c.entries[:i])
			c.entries[0] = ce
			return ce.e, nil
		}
	}
	be, err := open()
	if err != nil {
		return nil, err
	}
	e, err := infer.Load(model, adapter)
	if err != nil {
		return nil, err
	}
	if err := e.UseDevice(be, false, nil, nil); err != nil {
		return nil, err
	}
	c.entries = append([]cachedEngine{{key, e}}, c.entries...)
	if len(c.entries) > cachedEngines {
		for _, old := range c.entries[cachedEngines:] {
			old.e.Close() // its copy on the backend
		}
		c.entries = c.entries[:cachedEngines]
	}
	return e, nil
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// streamWriter writes one JSON object per line and flushes it, so that the
// page shows text as it is generated.
type streamWriter struct {
	mu sync.Mutex // progress callbacks may come from several goroutines
	w  http.ResponseWriter
	f  http.Flusher
}

func newStream(w http.ResponseWriter) *streamWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	f, _ := w.(http.Flusher)
	return &streamWriter{w: w, f: f}
}

func (s *streamWriter) send(v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(v)
	s.w.Write(append(b, '\n'))
	if s.f != nil {
		s.f.Flush()
	}
}

// handleChat generates the assistant's reply to a conversation, streamed as
// {"text": ...} lines and ended by {"done": true, ...} or {"error": ...}.
// It does what `gotune chat` does for one turn.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model        string        `json:"model"`
		Adapter      string        `json:"adapter"`
		Messages     []chatMessage `json:"messages"`
		MaxNewTokens int           `json:"max_new_tokens"`
		Temperature  float64       `json:"temperature"`
		Seed         uint64        `json:"seed"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(req.Messages) == 0 || req.Messages[len(req.Messages)-1].Role != "user" {
		s.fail(w, r, badRequest("messages: want a conversation ending with a user message"))
		return
	}
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			s.fail(w, r, badRequest("messages[%d].role %q: want system, user or assistant", i, m.Role))
			return
		}
	}
	if req.MaxNewTokens == 0 {
		req.MaxNewTokens = 256
	}
	if req.MaxNewTokens < 0 || req.MaxNewTokens > 8192 {
		s.fail(w, r, badRequest("max_new_tokens: want 1 to 8192"))
		return
	}
	if req.Temperature < 0 || req.Temperature > 5 {
		s.fail(w, r, badRequest("temperature: want 0 (greedy) to 5"))
		return
	}
	model, err := s.resolve(req.Model, false)
	if err != nil {
		s.fail(w, r, fmt.Errorf("model: %w", err))
		return
	}
	adapter := ""
	if req.Adapter != "" {
		if adapter, err = s.resolve(req.Adapter, false); err != nil {
			s.fail(w, r, fmt.Errorf("adapter: %w", err))
			return
		}
	}
	s.engines.mu.Lock()
	defer s.engines.mu.Unlock()
	e, err := s.engines.get(model, adapter, s.openBackend)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if e.Template == nil {
		s.fail(w, r, badRequest("%s has no chat template", model))
		return
	}
	msgs := make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = chat.NewMessage(m.Role, m.Content)
	}
	prompt, err := e.Prompt(msgs, chat.Options{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	maxNew := req.MaxNewTokens
	if e.Model != nil && e.Model.Cfg != nil && e.Model.Cfg.MaxPositions > 0 {
		room := e.Model.Cfg.MaxPositions - e.CountTokens(prompt)
		if room <= 0 {
			s.fail(w, r, badRequest("the conversation (%d tokens) fills the model's %d-token context: start a new one", e.CountTokens(prompt), e.Model.Cfg.MaxPositions))
			return
		}
		maxNew = min(maxNew, room)
	}
	st := newStream(w)
	start := time.Now()
	res, err := e.GenerateContext(r.Context(), infer.Request{Prompt: prompt, MaxTokens: maxNew,
		Sample: infer.SampleOptions{Temperature: req.Temperature, TopP: 1, RepetitionPenalty: 1, Seed: req.Seed},
		OnText: func(t string) { st.send(map[string]string{"text": t}) }})
	if err != nil {
		st.send(map[string]string{"error": err.Error()})
		return
	}
	el := time.Since(start).Seconds()
	st.send(map[string]any{"done": true, "tokens": len(res.Tokens), "finish_reason": res.FinishReason,
		"tokens_per_s": float64(len(res.Tokens)) / max(el, 1e-9)})
}

// handleExport does what `gotune export` does, streaming progress as
// {"written": bytes, "total": bytes} lines and ending with {"result": ...}
// or {"error": ...}.
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model     string `json:"model"`
		Adapter   string `json:"adapter"`
		Out       string `json:"out"`
		Format    string `json:"format"`
		GGUFType  string `json:"gguf_type"`
		Modelfile bool   `json:"modelfile"`
		Force     bool   `json:"force"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	var o export.Options
	var err error
	if o.Model, err = s.resolve(req.Model, false); err != nil {
		s.fail(w, r, fmt.Errorf("model: %w", err))
		return
	}
	if req.Adapter != "" {
		if o.Adapter, err = s.resolve(req.Adapter, false); err != nil {
			s.fail(w, r, fmt.Errorf("adapter: %w", err))
			return
		}
	}
	if o.Out, err = s.resolve(req.Out, true); err != nil {
		s.fail(w, r, fmt.Errorf("out: %w", err))
		return
	}
	switch req.Format {
	case "hf", "peft", "gguf":
		o.Format = export.Format(req.Format)
	default:
		s.fail(w, r, badRequest("format %q: want hf, peft or gguf", req.Format))
		return
	}
	if req.GGUFType == "" {
		req.GGUFType = "f16"
	}
	if o.GGUFType, err = export.ParseGGUFType(req.GGUFType); err != nil {
		s.fail(w, r, badRequest("gguf_type: %v", err))
		return
	}
	if req.Modelfile && o.Format != export.GGUF {
		s.fail(w, r, badRequest("modelfile: only with format gguf"))
		return
	}
	o.Modelfile, o.Force = req.Modelfile, req.Force
	// One export at a time: two writing the same folder would race.
	if !s.exportMu.TryLock() {
		s.fail(w, r, conflict("another export is running"))
		return
	}
	defer s.exportMu.Unlock()
	st := newStream(w)
	var last time.Time
	var lastMu sync.Mutex
	o.Progress = func(done, total int64) {
		lastMu.Lock()
		defer lastMu.Unlock()
		if time.Since(last) > 200*time.Millisecond || done == total {
			last = time.Now()
			st.send(map[string]int64{"written": done, "total": total})
		}
	}
	var logb strings.Builder
	o.Log = &logb
	res, err := export.Run(o)
	if err != nil {
		st.send(map[string]string{"error": err.Error()})
		return
	}
	st.send(map[string]any{"result": map[string]any{"out": res.Out, "files": res.Files, "merged": res.Merged}, "log": logb.String()})
}
