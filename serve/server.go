// Package serve is an OpenAI-compatible HTTP API over gotune models:
// /v1/models, /v1/chat/completions (tools, reasoning, streaming) and
// /v1/completions, with several adapters selectable by model name, bounded
// concurrency with a queue, an optional API key and graceful shutdown.
package serve

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"gotune/chat"
	"gotune/infer"
)

// Engine is what the server needs from a loaded model; *infer.Engine
// implements it. The server calls one Engine from one request at a time.
type Engine interface {
	// Prompt renders chat messages with the model's template and a
	// generation prompt.
	Prompt(msgs []chat.Message, opt chat.Options) (string, error)
	CountTokens(text string) int
	GenerateContext(ctx context.Context, req infer.Request) (infer.Result, error)
}

// Model is one name clients can ask for.
type Model struct {
	Name string
	// Engines each run one generation at a time (a model's layers and its
	// adapter keep per-call buffers); n engines allow n generations of this
	// model at once, each engine holding its own weights.
	Engines    []Engine
	ToolFormat ToolFormat
	// Defaults are the sampling options for fields a request leaves out.
	Defaults infer.SampleOptions
	// ContextLength bounds prompt plus completion tokens; 0: no bound.
	ContextLength int
	// Reasoning: the model may open a <think> block itself (its template
	// knows the tag). A constrained reply may then start with one, as the
	// model would write it, and the constraint applies after it.
	Reasoning bool
	// TemplateSource is the chat template's text: a chat_template_kwargs
	// key it never names is refused (it would be ignored). Empty: not
	// checked.
	TemplateSource string
}

// FromEngines describes engines loaded from the same model folder and
// adapter: tool format from the chat template, defaults from
// generation_config.json, context length from config.json.
func FromEngines(name string, engines ...*infer.Engine) Model {
	m := Model{Name: name, ToolFormat: FormatHermes}
	for _, e := range engines {
		m.Engines = append(m.Engines, e)
	}
	if len(engines) == 0 {
		return m
	}
	e := engines[0]
	if e.Template != nil {
		m.ToolFormat = DetectToolFormat(e.Template.Source)
		m.Reasoning = strings.Contains(e.Template.Source, thinkOpen)
		m.TemplateSource = e.Template.Source
	}
	g := e.Gen
	m.Defaults = infer.SampleOptions{TopK: g.TopK, TopP: g.TopP, RepetitionPenalty: g.RepetitionPenalty}
	if g.DoSample {
		m.Defaults.Temperature = g.Temperature
	}
	if e.Model != nil && e.Model.Cfg != nil {
		m.ContextLength = e.Model.Cfg.MaxPositions
	}
	return m
}

// ModelName is the name a model folder is served under: its base name.
func ModelName(dir string) string { return filepath.Base(filepath.Clean(dir)) }

// Config sets up a Server. Zero values take the defaults in brackets.
type Config struct {
	// Models are the names served; a request without "model" gets the first.
	Models []Model
	// APIKey, when set, is required as "Authorization: Bearer KEY".
	APIKey string
	// MaxConcurrency bounds the generations running at once [1].
	MaxConcurrency int
	// QueueSize bounds the requests waiting for a turn; more get 429 [16].
	QueueSize int
	// MaxTokens is the largest max_tokens accepted, and the default [2048].
	MaxTokens int
	// MaxBodyBytes bounds a request body [4 MiB].
	MaxBodyBytes int64
	// ShutdownTimeout is how long Serve waits for requests in flight once
	// its context ends, before cancelling them [30s].
	ShutdownTimeout time.Duration
	// Logf, when set, receives one line per generation.
	Logf func(format string, args ...any)
}

// Server answers the API. Create it with New.
type Server struct {
	cfg      Config
	models   map[string]*pool
	names    []string
	created  int64
	slots    chan struct{}
	admitted atomic.Int64 // queued or running
	running  atomic.Int64
	// bodyTimeout bounds reading a request body (slow clients).
	bodyTimeout time.Duration
}

type pool struct {
	Model
	free chan Engine
}

// New checks the configuration and returns a server.
func New(cfg Config) (*Server, error) {
	if len(cfg.Models) == 0 {
		return nil, fmt.Errorf("serve: no models")
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 1
	}
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("serve: queue size %d is negative", cfg.QueueSize)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 16
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 2048
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, models: map[string]*pool{}, created: time.Now().Unix(),
		slots: make(chan struct{}, cfg.MaxConcurrency), bodyTimeout: 30 * time.Second}
	for _, m := range cfg.Models {
		if m.Name == "" {
			return nil, fmt.Errorf("serve: a model has no name")
		}
		if _, dup := s.models[m.Name]; dup {
			return nil, fmt.Errorf("serve: model name %q given twice", m.Name)
		}
		if len(m.Engines) == 0 {
			return nil, fmt.Errorf("serve: model %q has no engine", m.Name)
		}
		p := &pool{Model: m, free: make(chan Engine, len(m.Engines))}
		for _, e := range m.Engines {
			p.free <- e
		}
		s.models[m.Name] = p
		s.names = append(s.names, m.Name)
	}
	return s, nil
}

// Stats is a snapshot of the server's load.
type Stats struct {
	Running int `json:"running"`
	Queued  int `json:"queued"`
}

// Stats reports requests generating and waiting.
func (s *Server) Stats() Stats {
	r := int(s.running.Load())
	return Stats{Running: r, Queued: max(int(s.admitted.Load())-r, 0)}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Status string `json:"status"`
			Stats
		}{"ok", s.Stats()})
	})
	mux.HandleFunc("GET /v1/models", s.auth(s.listModels))
	mux.HandleFunc("GET /v1/models/{id...}", s.auth(s.getModel))
	mux.HandleFunc("POST /v1/chat/completions", s.auth(s.chatCompletions))
	mux.HandleFunc("POST /v1/completions", s.auth(s.completions))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newError(http.StatusNotFound, "invalid_request_error", "not_found", "",
			"no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Serve answers on ln until ctx ends, then stops accepting connections and
// waits up to ShutdownTimeout for requests in flight (streams included)
// before cancelling their generations. It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	hs := &http.Server{
		Handler:           s.Handler(),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: it would cut long streams. readJSON bounds the
		// time to send a body.
		IdleTimeout: 120 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		cancelBase() // stop what still runs, then drop the connections
		hs.Close()
		err = fmt.Errorf("shutdown: requests still running after %v were cancelled: %w", s.cfg.ShutdownTimeout, err)
	}
	<-done
	return err
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIKey == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gotune"`)
			writeError(w, newError(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "",
				"missing or incorrect API key: send the header \"Authorization: Bearer KEY\""))
			return
		}
		h(w, r)
	}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	data := make([]modelJSON, len(s.names))
	for i, n := range s.names {
		data[i] = modelJSON{ID: n, Object: "model", Created: s.created, OwnedBy: "gotune"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.models[id]; !ok {
		writeError(w, s.unknownModel(id))
		return
	}
	writeJSON(w, http.StatusOK, modelJSON{ID: id, Object: "model", Created: s.created, OwnedBy: "gotune"})
}

func (s *Server) unknownModel(name string) *apiError {
	return newError(http.StatusNotFound, "invalid_request_error", "model_not_found", "model",
		"model %q is not served here; available: %s", name, strings.Join(s.names, ", "))
}

func (s *Server) pool(name string) (*pool, error) {
	if name == "" {
		return s.models[s.names[0]], nil
	}
	p, ok := s.models[name]
	if !ok {
		return nil, s.unknownModel(name)
	}
	return p, nil
}

var errBusy = newError(http.StatusTooManyRequests, "rate_limit_error", "queue_full", "",
	"server busy: all generation slots and the queue are full; retry later")

// acquire waits for one of p's engines and a generation slot. It refuses
// at once when the queue is full, and gives up when ctx ends.
func (s *Server) acquire(ctx context.Context, p *pool) (Engine, func(), error) {
	if s.admitted.Add(1) > int64(s.cfg.MaxConcurrency+s.cfg.QueueSize) {
		s.admitted.Add(-1)
		return nil, nil, errBusy
	}
	var e Engine
	// Engine first: a request waiting for its model's engine must not hold
	// a slot another model could use.
	select {
	case e = <-p.free:
	case <-ctx.Done():
		s.admitted.Add(-1)
		return nil, nil, ctx.Err()
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		p.free <- e
		s.admitted.Add(-1)
		return nil, nil, ctx.Err()
	}
	s.running.Add(1)
	release := func() {
		s.running.Add(-1)
		<-s.slots
		p.free <- e
		s.admitted.Add(-1)
	}
	return e, release, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}
