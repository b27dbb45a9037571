package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotune/assets"
	"gotune/chat"
	"gotune/infer"
)

// tinyDir extracts the bundled model once per test binary.
var tinyDir = sync.OnceValues(func() (string, error) {
	return assets.ModelDir(assets.DefaultModel, "")
})

func tinyTemplate(t *testing.T) *chat.Template {
	t.Helper()
	dir, err := tinyDir()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// load counts generations running across a set of fake engines.
type load struct {
	active, peak atomic.Int64
}

func (l *load) enter() {
	n := l.active.Add(1)
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// fakeEngine replies with scripted pieces of text, deterministically.
type fakeEngine struct {
	tmpl  *chat.Template // renders prompts; nil joins the contents
	reply func(prompt string) []string
	load  *load
	// gate, when set, must yield a value before the generation starts;
	// step, when set, before each piece after the first.
	gate, step chan struct{}

	mu        sync.Mutex
	prompts   []string
	produced  atomic.Int64 // pieces handed to OnText
	cancelled atomic.Int64 // generations that ended by their context
}

func (f *fakeEngine) Prompt(msgs []chat.Message, opt chat.Options) (string, error) {
	if f.tmpl != nil {
		opt.AddGenerationPrompt = true
		return f.tmpl.Render(msgs, opt)
	}
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s: %v\n", m.Role(), m.Content())
	}
	return b.String(), nil
}

func (f *fakeEngine) CountTokens(text string) int { return len(strings.Fields(text)) }

func (f *fakeEngine) GenerateContext(ctx context.Context, req infer.Request) (infer.Result, error) {
	if f.load != nil {
		f.load.enter()
		defer f.load.active.Add(-1)
	}
	f.mu.Lock()
	f.prompts = append(f.prompts, req.Prompt)
	f.mu.Unlock()
	wait := func(c chan struct{}) error {
		if c == nil {
			return nil
		}
		select {
		case <-c:
			return nil
		case <-ctx.Done():
			f.cancelled.Add(1)
			return ctx.Err()
		}
	}
	res := infer.Result{PromptTokens: f.CountTokens(req.Prompt), FinishReason: "stop"}
	if err := wait(f.gate); err != nil {
		return res, err
	}
	pieces := []string{"Hello", " world."}
	if f.reply != nil {
		pieces = f.reply(req.Prompt)
	}
	for i, p := range pieces {
		if i > 0 {
			if err := wait(f.step); err != nil {
				return res, err
			}
		}
		if ctx.Err() != nil {
			f.cancelled.Add(1)
			return res, ctx.Err()
		}
		if len(res.Tokens) == req.MaxTokens {
			res.FinishReason = "length"
			break
		}
		res.Tokens = append(res.Tokens, int32(i))
		res.Text += p
		f.produced.Add(1)
		if req.OnText != nil {
			req.OnText(p)
		}
	}
	return res, nil
}

func (f *fakeEngine) lastPrompt() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.prompts) == 0 {
		return ""
	}
	return f.prompts[len(f.prompts)-1]
}

// testServer serves cfg over loopback with httptest.
func testServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func oneModel(name string, engines ...Engine) []Model {
	return []Model{{Name: name, Engines: engines, ToolFormat: FormatHermes}}
}

// post sends a JSON body and returns the status and decoded body.
func post(t *testing.T, c *http.Client, url string, body any, header ...string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(http.MethodPost, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not JSON (%d): %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, resp.Header
}

// events reads server-sent events: the JSON payload of each "data:" line,
// or "[DONE]".
type events struct {
	r    *bufio.Reader
	body io.Closer
}

func openStream(t *testing.T, ctx context.Context, c *http.Client, url string, body any) *events {
	t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(j))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	return &events{r: bufio.NewReader(resp.Body), body: resp.Body}
}

// next returns the next event's data, or "" at the end of the stream.
func (e *events) next(t *testing.T) string {
	t.Helper()
	for {
		line, err := e.r.ReadString('\n')
		if err != nil {
			return ""
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		return data
	}
}

func (e *events) nextJSON(t *testing.T) map[string]any {
	t.Helper()
	d := e.next(t)
	var m map[string]any
	if err := json.Unmarshal([]byte(d), &m); err != nil {
		t.Fatalf("event %q: %v", d, err)
	}
	return m
}

// waitFor polls cond (a state change in another goroutine) for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// get reads a path of m as JSON: get(m, "choices", 0, "message").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func mustPrompt(t *testing.T, e *infer.Engine, user string) string {
	t.Helper()
	p, err := e.Prompt([]chat.Message{chat.NewMessage("user", user)}, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
