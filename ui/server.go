package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gotune/compute"
)

// errNoBackend answers chat and evaluation on a server given no backend.
var errNoBackend = errors.New("ui: no compute backend to run models on (ui.Options.Backend)")

// openBackend is a fresh backend from Options.Backend.
func (s *Server) openBackend() (compute.Backend, error) {
	if s.backend == nil {
		return nil, errNoBackend
	}
	return s.backend(), nil
}

//go:embed static
var static embed.FS

// Options configures a Server.
type Options struct {
	// Roots are the folders the page may read and write under; pickers see
	// nothing else. Empty means the working directory.
	Roots []string
	// Token, when set, must accompany every request (the page passes it
	// once as ?token= and keeps it in a cookie). Required off loopback.
	Token string
	// Command builds the child process for `gotune ARGS...` (training runs
	// as a child so that it outlives the page, can be stopped, and runs at
	// a lower priority than the server). Nil runs this executable.
	Command func(args ...string) *exec.Cmd
	// ReadOnly lists extra folders that may be read but not written (the
	// bundled model and data).
	ReadOnly []string
	// Log receives one line per failed request and job event (nil: none).
	Log io.Writer
	// Backend gives the compute backend that a chat engine or an
	// evaluation runs on, a fresh one each (the command chooses it; nil:
	// chat and evaluation answer that there is none).
	Backend func() compute.Backend
}

// Server is the web UI: the page and its JSON API.
type Server struct {
	roots    []string // resolved, absolute
	readOnly []string
	token    string
	csrf     string
	command  func(args ...string) *exec.Cmd
	backend  func() compute.Backend
	log      io.Writer
	jobs     *jobs
	engines  engineCache
	mux      *http.ServeMux
	exportMu sync.Mutex
	rates    rates
}

// New checks the roots and prepares the server.
func New(opt Options) (*Server, error) {
	if len(opt.Roots) == 0 {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		opt.Roots = []string{wd}
	}
	s := &Server{token: opt.Token, command: opt.Command, log: opt.Log, backend: opt.Backend}
	for _, r := range opt.Roots {
		p, err := resolveDir(r)
		if err != nil {
			return nil, fmt.Errorf("--root %s: %w", r, err)
		}
		s.roots = append(s.roots, p)
	}
	for _, r := range opt.ReadOnly {
		if p, err := resolveDir(r); err == nil {
			s.readOnly = append(s.readOnly, p)
		}
	}
	if s.command == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		s.command = func(args ...string) *exec.Cmd { return exec.Command(exe, args...) }
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s.csrf = hex.EncodeToString(b[:])
	s.jobs = newJobs(s)
	s.routes()
	return s, nil
}

func resolveDir(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("not a folder")
	}
	return real, nil
}

// Roots are the resolved folders the page may use.
func (s *Server) Roots() []string { return append([]string(nil), s.roots...) }

// CSRFToken is the value state-changing requests must carry in the
// X-Gotune-CSRF header; the page receives it embedded in its HTML.
func (s *Server) CSRFToken() string { return s.csrf }

// CheckAddr refuses to listen beyond loopback without a token: anyone who
// can reach the port could otherwise read files under the roots and start
// processes.
func CheckAddr(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v (want host:port, e.g. 127.0.0.1:7860)", addr, err)
	}
	if isLoopback(host) {
		return nil
	}
	if token == "" {
		return fmt.Errorf("address %q is reachable from other machines: give --token (or GOTUNE_UI_TOKEN) to require it, or bind 127.0.0.1", addr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve listens on addr until ctx ends. ready, if not nil, receives the
// page's URL once the listener is open.
func (s *Server) Serve(ctx context.Context, addr string, ready func(url string)) error {
	if err := CheckAddr(addr, s.token); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "localhost"
		}
		u := "http://" + net.JoinHostPort(host, port) + "/"
		if s.token != "" {
			u += "?token=" + s.token
		}
		ready(u)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

const (
	csrfHeader  = "X-Gotune-CSRF"
	tokenCookie = "gotune_ui_token"
)

// ServeHTTP applies the guards every request passes before routing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if s.token == "" {
		// Without a token only loopback may talk to us; a page on another
		// site that rebinds its own name to 127.0.0.1 still sends its own
		// name as Host, and is refused here.
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopback(strings.Trim(host, "[]")) {
			httpError(w, http.StatusForbidden, fmt.Sprintf("host %q refused: this server answers only to localhost (start it with --token to use other names)", r.Host))
			return
		}
	}
	if s.token != "" && !s.authorized(w, r) {
		httpError(w, http.StatusUnauthorized, "this server needs its token: open the URL gotune ui printed (it ends in ?token=...)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.checkCSRF(r); err != nil {
			httpError(w, http.StatusForbidden, err.Error())
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	ok := func(v string) bool { return subtle.ConstantTimeCompare([]byte(v), []byte(s.token)) == 1 }
	if c, err := r.Cookie(tokenCookie); err == nil && ok(c.Value) {
		return true
	}
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") && ok(strings.TrimPrefix(h, "Bearer ")) {
		return true
	}
	if q := r.URL.Query().Get("token"); q != "" && ok(q) {
		// The token leaves the address bar for a cookie the browser sends
		// back only to this site.
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		return true
	}
	return false
}

// checkCSRF requires, on every state-changing request, the per-server
// token only the page knows (another site cannot read it, nor set a custom
// header without a preflight we never grant), and an Origin, when the
// browser sends one, naming this server.
func (s *Server) checkCSRF(r *http.Request) error {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.csrf)) != 1 {
		return fmt.Errorf("missing or wrong %s header: reload the page", csrfHeader)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return fmt.Errorf("cross-site request from %s refused", o)
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("cross-site request refused")
	}
	return nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServer(http.FS(sub))
	m.HandleFunc("GET /{$}", s.handleIndex)
	m.Handle("GET /static/", http.StripPrefix("/static/", files))
	m.HandleFunc("GET /api/session", s.handleSession)
	m.HandleFunc("GET /api/files", s.handleFiles)
	m.HandleFunc("GET /api/models", s.handleModels)
	m.HandleFunc("GET /api/datasets", s.handleDatasets)
	m.HandleFunc("POST /api/inspect", s.handleInspect)
	m.HandleFunc("GET /api/records", s.handleRecords)
	m.HandleFunc("POST /api/records/save", s.handleSaveRecords)
	m.HandleFunc("POST /api/config", s.handleConfig)
	m.HandleFunc("POST /api/plan", s.handlePlan)
	m.HandleFunc("GET /api/runs", s.handleRuns)
	m.HandleFunc("GET /api/run", s.handleRun)
	m.HandleFunc("GET /api/run/log", s.handleRunLog)
	m.HandleFunc("GET /api/run/yaml", s.handleRunYAML)
	m.HandleFunc("POST /api/run/start", s.handleStart)
	m.HandleFunc("POST /api/run/stop", s.handleStop)
	m.HandleFunc("POST /api/run/resume", s.handleResume)
	m.HandleFunc("GET /api/chart.svg", s.handleChart)
	m.HandleFunc("POST /api/eval", s.handleEval)
	m.HandleFunc("POST /api/chat", s.handleChat)
	m.HandleFunc("POST /api/export", s.handleExport)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no API %s %s (see the ui package documentation)", r.Method, r.URL.Path))
	})
	s.mux = m
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// The CSRF token travels inside the page: only a page this server
	// served can know it.
	page := strings.Replace(string(b), "{{CSRF}}", s.csrf, 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, page)
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"roots": s.roots, "read_only": s.readOnly})
}

// apiError is an error with the HTTP status it maps to.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &apiError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &apiError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &apiError{http.StatusConflict, fmt.Sprintf(format, args...)}
}

// fail writes err with its status: API errors keep theirs, anything else
// (a config the trainer refuses, a model that does not load) is the
// request's fault as far as the page can tell, so 422 with the message.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusUnprocessableEntity
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.status
	}
	if s.log != nil {
		fmt.Fprintf(s.log, "%s %s: %d %v\n", r.Method, r.URL.Path, status, err)
	}
	httpError(w, status, err.Error())
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly: unknown fields are an error, as a
// misspelt field would otherwise be silently ignored.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return &apiError{http.StatusUnsupportedMediaType, "want Content-Type: application/json"}
	}
	d := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}
