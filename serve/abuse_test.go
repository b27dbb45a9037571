package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gotune/chat"
)

// lockedBuffer collects the server's error log (panics recovered by
// net/http land there).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rawPost sends body and returns the status and the raw reply.
func rawPost(c *http.Client, url, body string) (int, []byte, error) {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// toolCallMessage is an assistant message whose one tool call has the
// given JSON value as "arguments".
func toolCallMessage(args string) string {
	return `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"",` +
		`"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":` + args + `}}]}]}`
}

// abuseCases are generated here, not downloaded: hostile and malformed
// requests and their neighbours.
func abuseCases() map[string]string {
	const user = `[{"role":"user","content":"hi"}]`
	deep := func(open, close string, n int) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	c := map[string]string{
		"deep body array":           `{"model":"m","messages":` + deep("[", "]", 1<<20) + `}`,
		"deep body object":          `{"model":"m","messages":` + user + `,"chat_template_kwargs":` + strings.Repeat(`{"a":`, 300000) + "1" + strings.Repeat("}", 300000) + `}`,
		"deep tool arguments 1M":    toolCallMessage(jsonString(deep("[", "]", 1<<20))),
		"deep tool arguments 257":   toolCallMessage(jsonString(deep("[", "]", 257))),
		"deep tool argument object": toolCallMessage(jsonString(strings.Repeat(`{"a":`, 200000) + "1" + strings.Repeat("}", 200000))),
		"tool arguments not JSON":   toolCallMessage(`"{not json"`),
		"tool_calls a string":       `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":"call"}]}`,
		"tool_calls a number":       `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":7}]}`,
		"tool_calls object":         `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":{"a":1}}]}`,
		"tool_call not an object":   `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":[1]}]}`,
		"tool_call no function":     `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":[{"type":"function"}]}]}`,
		"tool_call no name":         `{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":[{"function":{"arguments":"{}"}}]}]}`,
		"messages null":             `{"model":"m","messages":null}`,
		"messages a string":         `{"model":"m","messages":"hi"}`,
		"message a number":          `{"model":"m","messages":[1]}`,
		"role missing":              `{"model":"m","messages":[{"content":"x"}]}`,
		"content a number":          `{"model":"m","messages":[{"role":"user","content":5}]}`,
		"content parts numbers":     `{"model":"m","messages":[{"role":"user","content":[1,2]}]}`,
		"content part no text":      `{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}`,
		"max_tokens huge":           `{"model":"m","max_tokens":1e400,"messages":` + user + `}`,
		"max_tokens negative":       `{"model":"m","max_tokens":-5,"messages":` + user + `}`,
		"max_tokens float":          `{"model":"m","max_tokens":1.5,"messages":` + user + `}`,
		"temperature NaN":           `{"model":"m","temperature":NaN,"messages":` + user + `}`,
		"top_k huge":                `{"model":"m","top_k":1e30,"messages":` + user + `}`,
		"seed a string":             `{"model":"m","seed":"x","messages":` + user + `}`,
		"stop deep":                 `{"model":"m","stop":` + deep("[", "]", 100000) + `,"messages":` + user + `}`,
		"tools deep":                `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":` + deep("[", "]", 5000) + `}}],"messages":` + user + `}`,
		"tools a string":            `{"model":"m","tools":"f","messages":` + user + `}`,
		"tool_choice deep":          `{"model":"m","tool_choice":` + deep("[", "]", 100000) + `,"messages":` + user + `}`,
		"kwargs a list":             `{"model":"m","chat_template_kwargs":[1],"messages":` + user + `}`,
		"truncated":                 `{"model":"m","messages":[{"role":"user","content":"hi`,
		"trailing garbage":          `{"model":"m","messages":` + user + `}}}`,
		"empty":                     ``,
		"null":                      `null`,
		"nul bytes":                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\x00b\"}]}",
		"template bomb":             `{"model":"bomb","messages":` + user + `}`,
		"template bomb with tools":  `{"model":"bomb","tools":[{"type":"function","function":{"name":"f"}}],"messages":` + user + `}`,
		"completion prompt deep":    `{"model":"m","prompt":` + deep("[", "]", 1<<20) + `}`,
		"completion prompt object":  `{"model":"m","prompt":{"a":1}}`,
	}
	// neighbours on both sides of the nesting bound; " (ok)" marks the
	// requests that must succeed
	for depth := 250; depth <= 260; depth += 5 {
		name := fmt.Sprintf("tool arguments depth %d", depth)
		if depth <= 256 {
			name += " (ok)"
		}
		c[name] = toolCallMessage(jsonString(strings.Repeat(`{"k":`, depth) + "1" + strings.Repeat("}", depth)))
	}
	c["tool arguments object (ok)"] = toolCallMessage(jsonString(`{"city": "Paris", "days": [1, 2]}`))
	return c
}

// Every abusive request ends in an OpenAI-style error in bounded time, the
// server logs no panic, and a normal request still succeeds afterwards.
func TestAbuseCorpus(t *testing.T) {
	// A model folder's template that doubles a string until memory runs out:
	// the value bounds of package chat must stop it at the first request.
	bomb, err := chat.Parse("bomb", "{% set ns = namespace(s=messages[0].content) %}\n"+
		"{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Models: []Model{
		{Name: "m", Engines: []Engine{&fakeEngine{tmpl: tinyTemplate(t)}}, ToolFormat: FormatHermes},
		{Name: "bomb", Engines: []Engine{&fakeEngine{tmpl: bomb}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var errLog lockedBuffer
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ErrorLog = log.New(&errLog, "", 0)
	ts.Start()
	defer ts.Close()
	c := ts.Client()
	url := ts.URL + "/v1/chat/completions"
	normal := `{"model":"m","messages":[{"role":"user","content":"hello"}]}`

	cases := abuseCases()
	var slowest time.Duration
	var slowestName string
	var maxSys uint64
	errorsSeen := 0
	for name, body := range cases {
		u := url
		if strings.HasPrefix(name, "completion") {
			u = ts.URL + "/v1/completions"
		}
		start := time.Now()
		status, raw, err := rawPost(c, u, body)
		if d := time.Since(start); d > slowest {
			slowest, slowestName = d, name
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		maxSys = max(maxSys, ms.Sys)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var reply struct {
			Error struct{ Message string } `json:"error"`
		}
		if strings.HasSuffix(name, " (ok)") {
			if status != 200 {
				t.Errorf("%s: status %d, want 200: %.300s", name, status, raw)
			}
		} else if json.Unmarshal(raw, &reply) != nil || reply.Error.Message == "" || status < 400 || status >= 500 {
			t.Errorf("%s: status %d, want a 4xx with an error message: %.300s", name, status, raw)
		} else {
			errorsSeen++
		}
		if st, raw, err := rawPost(c, url, normal); err != nil || st != 200 {
			t.Fatalf("after %s: normal request got %d %v: %.300s", name, st, err, raw)
		}
	}
	if l := errLog.String(); strings.Contains(l, "panic") {
		t.Errorf("the server recovered from a panic:\n%s", l)
	}
	neighbours := 0
	for name := range cases {
		if strings.HasSuffix(name, " (ok)") {
			neighbours++
		}
	}
	t.Logf("%d requests (%d abusive, %d valid neighbours): %d clear errors; slowest %v (%s); peak Go memory %d MB",
		len(cases), len(cases)-neighbours, neighbours, errorsSeen, slowest.Round(time.Millisecond), slowestName, maxSys>>20)
}

// A client that sends its body a byte at a time is cut off after the body
// timeout: it gets an error reply and the connection is closed, instead of
// the server draining the body for as long as the client cares to send it.
func TestSlowBodyClosesConnection(t *testing.T) {
	s, err := New(Config{Models: oneModel("m", &fakeEngine{})})
	if err != nil {
		t.Fatal(err)
	}
	s.bodyTimeout = 100 * time.Millisecond
	url, _, _ := serveOnLoopback(t, s)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const bodyLen = 100000
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", bodyLen)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// far longer than the test allows: only the server can end this
		for i := 1; i < bodyLen; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no reply while the body trickles in: %v", err)
	}
	raw, err := io.ReadAll(resp.Body) // ends at EOF only if the server closes
	if err != nil {
		t.Fatalf("connection still open after the reply: %v", err)
	}
	if resp.StatusCode != 400 || !resp.Close || !strings.Contains(string(raw), "reading the request body") {
		t.Errorf("status %d, close %v: %s", resp.StatusCode, resp.Close, raw)
	}
}
