package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gotune/chat"
)

func TestModelsAndAuth(t *testing.T) {
	_, ts := testServer(t, Config{APIKey: "sekrit", Models: []Model{
		{Name: "base", Engines: []Engine{&fakeEngine{}}},
		{Name: "sql", Engines: []Engine{&fakeEngine{}}},
	}})
	c := ts.Client()
	tests := []struct {
		path, key string
		status    int
		ids       []string
	}{
		{"/v1/models", "sekrit", 200, []string{"base", "sql"}},
		{"/v1/models", "", 401, nil},
		{"/v1/models", "wrong", 401, nil},
		{"/v1/models/sql", "sekrit", 200, []string{"sql"}},
		{"/v1/models/nope", "sekrit", 404, nil},
		{"/health", "", 200, nil},
		{"/v2/anything", "", 404, nil},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s key %q: status %d, want %d (%v)", tc.path, tc.key, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status >= 400 && get(body, "error", "message") == nil {
			t.Errorf("%s: error without message: %v", tc.path, body)
		}
		var ids []string
		if data, ok := body["data"].([]any); ok {
			for _, d := range data {
				ids = append(ids, get(d, "id").(string))
			}
		} else if id, ok := body["id"].(string); ok {
			ids = []string{id}
		}
		if tc.ids != nil && strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("%s: ids %v, want %v", tc.path, ids, tc.ids)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	strict, err := chat.Parse("strict", "{% for m in messages %}{% if m.role != 'user' %}"+
		"{{ raise_exception('Only user messages are supported.') }}{% endif %}{{ m.content }}{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	_, ts := testServer(t, Config{APIKey: "k", MaxTokens: 100, Models: []Model{
		{Name: "m", Engines: []Engine{&fakeEngine{tmpl: tinyTemplate(t)}}},
		{Name: "strict", Engines: []Engine{&fakeEngine{tmpl: strict}}},
	}})
	c := ts.Client()
	chatURL, cmplURL := ts.URL+"/v1/chat/completions", ts.URL+"/v1/completions"
	user := `[{"role":"user","content":"hi"}]`
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 5<<20) + `"}]}`
	tests := []struct {
		name, url, body string
		noKey           bool
		status          int
		code, param     string
	}{
		{"malformed JSON", chatURL, `{"model": "m", "messages": [`, false, 400, "invalid_json", ""},
		{"not an object", chatURL, `[1,2]`, false, 400, "", ""},
		{"unknown model", chatURL, `{"model":"gpt-9","messages":` + user + `}`, false, 404, "model_not_found", "model"},
		{"missing messages", chatURL, `{"model":"m"}`, false, 400, "", "messages"},
		{"empty messages", chatURL, `{"model":"m","messages":[]}`, false, 400, "", "messages"},
		{"bad role", chatURL, `{"model":"m","messages":[{"role":"wizard","content":"x"}]}`, false, 400, "", "messages[0]"},
		{"role not a string", chatURL, `{"model":"m","messages":[{"role":1,"content":"x"}]}`, false, 400, "", "messages"},
		{"image part", chatURL, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, false, 400, "", "messages[0]"},
		{"oversized body", chatURL, big, false, 413, "request_too_large", ""},
		{"max_tokens over the limit", chatURL, `{"model":"m","max_tokens":101,"messages":` + user + `}`, false, 400, "", "max_tokens"},
		{"max_completion_tokens zero", chatURL, `{"model":"m","max_completion_tokens":0,"messages":` + user + `}`, false, 400, "", "max_completion_tokens"},
		{"temperature wrong type", chatURL, `{"model":"m","temperature":"hot","messages":` + user + `}`, false, 400, "", "temperature"},
		{"temperature out of range", chatURL, `{"model":"m","temperature":3,"messages":` + user + `}`, false, 400, "", "temperature"},
		{"top_p zero", chatURL, `{"model":"m","top_p":0,"messages":` + user + `}`, false, 400, "", "top_p"},
		{"n above one", chatURL, `{"model":"m","n":2,"messages":` + user + `}`, false, 400, "", "n"},
		{"stop wrong type", chatURL, `{"model":"m","stop":5,"messages":` + user + `}`, false, 400, "", "stop"},
		{"stream_options without stream", chatURL, `{"model":"m","stream_options":{"include_usage":true},"messages":` + user + `}`, false, 400, "", "stream_options"},
		{"bad tool", chatURL, `{"model":"m","tools":[{"type":"function","function":{}}],"messages":` + user + `}`, false, 400, "", "tools[0]"},
		{"tool_choice names a missing tool", chatURL, `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}},"messages":` + user + `}`, false, 400, "", "tool_choice"},
		{"tool_choice unknown mode", chatURL, `{"model":"m","tool_choice":"always","messages":` + user + `}`, false, 400, "", "tool_choice"},
		{"reserved template variable", chatURL, `{"model":"m","chat_template_kwargs":{"messages":[]},"messages":` + user + `}`, false, 400, "", "chat_template_kwargs"},
		{"template raises", chatURL, `{"model":"strict","messages":[{"role":"assistant","content":"x"}]}`, false, 400, "", "messages"},
		{"no API key", chatURL, `{"model":"m","messages":` + user + `}`, true, 401, "invalid_api_key", ""},
		{"completion without prompt", cmplURL, `{"model":"m"}`, false, 400, "", "prompt"},
		{"completion with two prompts", cmplURL, `{"model":"m","prompt":["a","b"]}`, false, 400, "", "prompt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{"Authorization", "Bearer k"}
			if tc.noKey {
				hdr = nil
			}
			status, body, _ := post(t, c, tc.url, tc.body, hdr...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			e, ok := body["error"].(map[string]any)
			if !ok || e["message"] == "" || e["type"] == "" {
				t.Fatalf("not an OpenAI error: %v", body)
			}
			if tc.code != "" && e["code"] != tc.code {
				t.Errorf("code %v, want %s", e["code"], tc.code)
			}
			if tc.param != "" && e["param"] != tc.param {
				t.Errorf("param %v, want %s (%s)", e["param"], tc.param, e["message"])
			}
		})
	}
}

func TestChatCompletion(t *testing.T) {
	f := &fakeEngine{tmpl: tinyTemplate(t), reply: func(string) []string {
		return []string{"<think>\nA greeting.\n</think>\n\n", "Hello", " there", ". STOP here"}
	}}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	status, body, _ := post(t, ts.Client(), ts.URL+"/v1/chat/completions",
		`{"model":"m","stop":["STOP"],"seed":7,"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"!"}]}]}`)
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	checks := []struct {
		path []any
		want any
	}{
		{[]any{"object"}, "chat.completion"},
		{[]any{"model"}, "m"},
		{[]any{"choices", 0, "message", "role"}, "assistant"},
		{[]any{"choices", 0, "message", "content"}, "Hello there."},
		{[]any{"choices", 0, "message", "reasoning_content"}, "A greeting."},
		{[]any{"choices", 0, "finish_reason"}, "stop"},
		{[]any{"usage", "completion_tokens"}, float64(4)},
	}
	for _, c := range checks {
		if got := get(body, c.path...); got != c.want {
			t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
		}
	}
	if id, _ := body["id"].(string); !strings.HasPrefix(id, "chatcmpl-") {
		t.Errorf("id %q", id)
	}
	// developer became system and text parts were joined before rendering.
	if p := f.lastPrompt(); !strings.Contains(p, "<|im_start|>system\nBe brief.<|im_end|>") || !strings.Contains(p, "<|im_start|>user\nHi!<|im_end|>") {
		t.Errorf("prompt:\n%s", p)
	}
}

func TestStreamingIsIncremental(t *testing.T) {
	f := &fakeEngine{step: make(chan struct{}), reply: func(string) []string {
		return []string{"<think>\nhm", "m\n</think>\n\nOne", ",", " two"}
	}}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	ev := openStream(t, context.Background(), ts.Client(), ts.URL+"/v1/chat/completions",
		map[string]any{"model": "m", "stream": true, "stream_options": map[string]any{"include_usage": true},
			"messages": []any{map[string]any{"role": "user", "content": "count"}}})
	defer ev.body.Close()

	first := ev.nextJSON(t)
	if get(first, "object") != "chat.completion.chunk" || get(first, "choices", 0, "delta", "role") != "assistant" {
		t.Fatalf("first chunk %v", first)
	}
	// Each piece must reach the client before the engine makes the next.
	var reasoning, content strings.Builder
	steps := 0
	for {
		c := ev.nextJSON(t)
		if fr := get(c, "choices", 0, "finish_reason"); fr != nil {
			if fr != "stop" {
				t.Errorf("finish_reason %v", fr)
			}
			break
		}
		if n := f.produced.Load(); n != int64(steps+1) {
			t.Fatalf("chunk %v arrived after the engine produced %d pieces, want %d", c, n, steps+1)
		}
		if s, ok := get(c, "choices", 0, "delta", "reasoning_content").(string); ok {
			reasoning.WriteString(s)
		}
		if s, ok := get(c, "choices", 0, "delta", "content").(string); ok {
			content.WriteString(s)
		}
		if steps < 3 {
			f.step <- struct{}{}
			steps++
		}
	}
	if steps != 3 {
		t.Errorf("the engine was stepped %d times, want 3: each piece gave a chunk", steps)
	}
	if reasoning.String() != "hmm" || content.String() != "One, two" {
		t.Errorf("reasoning %q content %q", reasoning.String(), content.String())
	}
	u := ev.nextJSON(t)
	if get(u, "usage", "completion_tokens") != float64(4) || len(get(u, "choices").([]any)) != 0 {
		t.Errorf("usage chunk %v", u)
	}
	if d := ev.next(t); d != "[DONE]" {
		t.Errorf("last event %q", d)
	}
}

func TestToolCallRoundTrip(t *testing.T) {
	f := &fakeEngine{tmpl: tinyTemplate(t), reply: func(prompt string) []string {
		if strings.Contains(prompt, "<tool_response>") {
			return []string{"It is sunny in Paris."}
		}
		return []string{"<tool_", "call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}
	}}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	c := ts.Client()
	tools := []any{map[string]any{"type": "function", "function": map[string]any{
		"name": "get_weather", "description": "Current weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}}
	msgs := []any{map[string]any{"role": "user", "content": "Weather in Paris?"}}

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			req := map[string]any{"model": "m", "messages": msgs, "tools": tools, "stream": stream}
			var call map[string]any
			var finish any
			if !stream {
				status, body, _ := post(t, c, ts.URL+"/v1/chat/completions", req)
				if status != 200 {
					t.Fatalf("status %d: %v", status, body)
				}
				finish = get(body, "choices", 0, "finish_reason")
				call, _ = get(body, "choices", 0, "message", "tool_calls", 0).(map[string]any)
				if get(body, "choices", 0, "message", "content") != nil {
					t.Errorf("content should be null beside tool calls: %v", body)
				}
			} else {
				ev := openStream(t, context.Background(), c, ts.URL+"/v1/chat/completions", req)
				defer ev.body.Close()
				for d := ev.next(t); d != "[DONE]" && d != ""; d = ev.next(t) {
					var m map[string]any
					json.Unmarshal([]byte(d), &m)
					if s, ok := get(m, "choices", 0, "delta", "content").(string); ok && s != "" {
						t.Errorf("tool-call markup leaked as content: %q", s)
					}
					if tc, ok := get(m, "choices", 0, "delta", "tool_calls", 0).(map[string]any); ok {
						call = tc
						if tc["index"] != float64(0) {
							t.Errorf("delta tool call without index 0: %v", tc)
						}
					}
					if fr := get(m, "choices", 0, "finish_reason"); fr != nil {
						finish = fr
					}
				}
			}
			if finish != "tool_calls" {
				t.Errorf("finish_reason %v", finish)
			}
			if id, _ := call["id"].(string); !strings.HasPrefix(id, "call_") || call["type"] != "function" ||
				get(call, "function", "name") != "get_weather" || get(call, "function", "arguments") != `{"city":"Paris"}` {
				t.Fatalf("tool call %v", call)
			}
			if p := f.lastPrompt(); !strings.Contains(p, "# Tools") || !strings.Contains(p, `"name": "get_weather"`) {
				t.Errorf("tools not rendered into the prompt:\n%s", p)
			}

			// Send the call and its result back, as an OpenAI client does.
			msgs2 := append(append([]any{}, msgs...),
				map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{call}},
				map[string]any{"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"})
			status, body, _ := post(t, c, ts.URL+"/v1/chat/completions", map[string]any{"model": "m", "messages": msgs2, "tools": tools})
			if status != 200 || get(body, "choices", 0, "message", "content") != "It is sunny in Paris." ||
				get(body, "choices", 0, "finish_reason") != "stop" {
				t.Fatalf("second turn %d: %v", status, body)
			}
			p := f.lastPrompt()
			for _, want := range []string{
				"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
				"<tool_response>\nsunny, 21C\n</tool_response>",
			} {
				if !strings.Contains(p, want) {
					t.Errorf("second prompt lacks %q:\n%s", want, p)
				}
			}
		})
	}
}

func TestToolChoice(t *testing.T) {
	f := &fakeEngine{tmpl: tinyTemplate(t), reply: func(string) []string {
		return []string{`<tool_call>{"name": "a", "arguments": {}}</tool_call>`}
	}}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	tool := func(n string) any {
		return map[string]any{"type": "function", "function": map[string]any{"name": n}}
	}
	tests := []struct {
		choice               any
		finish               string
		promptHas, promptNot string
	}{
		{"auto", "tool_calls", `"name": "b"`, ""},
		{"none", "stop", "", "# Tools"},
		{map[string]any{"type": "function", "function": map[string]any{"name": "a"}}, "tool_calls", `"name": "a"`, `"name": "b"`},
	}
	for _, tc := range tests {
		status, body, _ := post(t, ts.Client(), ts.URL+"/v1/chat/completions", map[string]any{"model": "m",
			"tools": []any{tool("a"), tool("b")}, "tool_choice": tc.choice,
			"messages": []any{map[string]any{"role": "user", "content": "go"}}})
		if status != 200 || get(body, "choices", 0, "finish_reason") != tc.finish {
			t.Errorf("tool_choice %v: %d %v", tc.choice, status, body)
		}
		p := f.lastPrompt()
		if (tc.promptHas != "" && !strings.Contains(p, tc.promptHas)) || (tc.promptNot != "" && strings.Contains(p, tc.promptNot)) {
			t.Errorf("tool_choice %v: prompt\n%s", tc.choice, p)
		}
	}
}

func TestCompletions(t *testing.T) {
	f := &fakeEngine{reply: func(p string) []string { return []string{" once", " upon", " a time"} }}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	status, body, _ := post(t, ts.Client(), ts.URL+"/v1/completions", `{"model":"m","prompt":"Tell me","max_tokens":2}`)
	if status != 200 || get(body, "object") != "text_completion" || get(body, "choices", 0, "text") != " once upon" ||
		get(body, "choices", 0, "finish_reason") != "length" || get(body, "usage", "prompt_tokens") != float64(2) {
		t.Fatalf("%d %v", status, body)
	}
	if f.lastPrompt() != "Tell me" {
		t.Errorf("completion prompt was templated: %q", f.lastPrompt())
	}
	ev := openStream(t, context.Background(), ts.Client(), ts.URL+"/v1/completions",
		map[string]any{"model": "m", "prompt": []string{"Tell me"}, "stream": true, "stop": "time"})
	defer ev.body.Close()
	var text strings.Builder
	var finish any
	for d := ev.next(t); d != "[DONE]"; d = ev.next(t) {
		if d == "" {
			t.Fatal("stream ended without [DONE]")
		}
		var m map[string]any
		json.Unmarshal([]byte(d), &m)
		text.WriteString(get(m, "choices", 0, "text").(string))
		if fr := get(m, "choices", 0, "finish_reason"); fr != nil {
			finish = fr
		}
	}
	if text.String() != " once upon a " || finish != "stop" {
		t.Errorf("streamed %q finish %v", text.String(), finish)
	}
}

func TestConcurrentClients(t *testing.T) {
	const clients, limit = 20, 3
	l := &load{}
	gate := make(chan struct{})
	var engines []Engine
	for range 4 {
		engines = append(engines, &fakeEngine{load: l, gate: gate})
	}
	s, ts := testServer(t, Config{MaxConcurrency: limit, QueueSize: clients, Models: []Model{
		{Name: "a", Engines: engines[:2]}, {Name: "b", Engines: engines[2:]},
	}})
	c := ts.Client()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			model := []string{"a", "b"}[i%2]
			status, body, _ := post(t, c, ts.URL+"/v1/chat/completions", map[string]any{"model": model,
				"messages": []any{map[string]any{"role": "user", "content": fmt.Sprint("client ", i)}}})
			if status != 200 || get(body, "choices", 0, "message", "content") != "Hello world." || get(body, "model") != model {
				errs <- fmt.Errorf("client %d: %d %v", i, status, body)
			}
		}()
	}
	// Hold every generation until the limit is reached, then let them run.
	waitFor(t, "3 running generations", func() bool { return s.Stats().Running == limit })
	waitFor(t, "all clients admitted", func() bool { st := s.Stats(); return st.Running+st.Queued == clients })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := l.peak.Load(); p != limit {
		t.Errorf("peak concurrent generations %d, want %d", p, limit)
	}
	if st := s.Stats(); st.Running != 0 || st.Queued != 0 {
		t.Errorf("after all answers: %+v", st)
	}
}

func TestQueueFull(t *testing.T) {
	gate := make(chan struct{})
	s, ts := testServer(t, Config{MaxConcurrency: 1, QueueSize: 1, Models: oneModel("m", &fakeEngine{gate: gate})})
	c := ts.Client()
	body := `{"messages":[{"role":"user","content":"hi"}]}`
	results := make(chan int, 2)
	for range 2 {
		go func() {
			status, _, _ := post(t, c, ts.URL+"/v1/chat/completions", body)
			results <- status
		}()
	}
	waitFor(t, "one running, one queued", func() bool { return s.Stats() == Stats{Running: 1, Queued: 1} })
	status, resp, hdr := post(t, c, ts.URL+"/v1/chat/completions", body)
	if status != http.StatusTooManyRequests || get(resp, "error", "code") != "queue_full" || hdr.Get("Retry-After") == "" {
		t.Errorf("third request: %d %v", status, resp)
	}
	close(gate)
	for range 2 {
		if st := <-results; st != 200 {
			t.Errorf("admitted request got %d", st)
		}
	}
}

func TestClientCancelStopsGeneration(t *testing.T) {
	tests := []struct {
		name   string
		stream bool
	}{{"plain", false}, {"stream", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEngine{step: make(chan struct{})}
			s, ts := testServer(t, Config{Models: oneModel("m", f)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				body := fmt.Sprintf(`{"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tc.stream)
				req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions", strings.NewReader(body))
				resp, err := ts.Client().Do(req)
				if err == nil {
					_, err = resp.Body.Read(make([]byte, 1<<16))
					for err == nil {
						_, err = resp.Body.Read(make([]byte, 1<<16))
					}
					resp.Body.Close()
				}
				done <- err
			}()
			waitFor(t, "the first piece", func() bool { return f.produced.Load() == 1 })
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("client error %v", err)
			}
			waitFor(t, "the generation to stop", func() bool { return f.cancelled.Load() == 1 })
			waitFor(t, "the slot to free", func() bool { return s.Stats() == Stats{} })
			if n := f.produced.Load(); n != 1 {
				t.Errorf("%d pieces produced after the client left", n)
			}
		})
	}
}

// serveOnLoopback runs Serve on 127.0.0.1:0 and returns its URL, the
// function that starts shutdown, and Serve's result.
func serveOnLoopback(t *testing.T, s *Server) (string, context.CancelFunc, chan error) {
	t.Helper()
	return serveOnLoopbackB(t, s)
}

func serveOnLoopbackB(t testing.TB, s *Server) (string, context.CancelFunc, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(cancel)
	return "http://" + ln.Addr().String(), cancel, done
}

func TestGracefulShutdown(t *testing.T) {
	f := &fakeEngine{step: make(chan struct{})}
	s, err := New(Config{Models: oneModel("m", f)})
	if err != nil {
		t.Fatal(err)
	}
	url, stop, served := serveOnLoopback(t, s)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	ev := openStream(t, context.Background(), c, url+"/v1/chat/completions",
		map[string]any{"stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	defer ev.body.Close()
	ev.nextJSON(t) // role
	if get(ev.nextJSON(t), "choices", 0, "delta", "content") != "Hello" {
		t.Fatal("first piece missing")
	}
	stop()
	// New connections are refused while the stream still runs.
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	f.step <- struct{}{}
	if get(ev.nextJSON(t), "choices", 0, "delta", "content") != " world." {
		t.Fatal("second piece missing")
	}
	if fr := get(ev.nextJSON(t), "choices", 0, "finish_reason"); fr != "stop" {
		t.Errorf("finish_reason %v", fr)
	}
	if d := ev.next(t); d != "[DONE]" {
		t.Errorf("last event %q", d)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestShutdownTimeoutCancelsGenerations(t *testing.T) {
	f := &fakeEngine{gate: make(chan struct{})} // never opened
	s, err := New(Config{ShutdownTimeout: 50 * time.Millisecond, Models: oneModel("m", f)})
	if err != nil {
		t.Fatal(err)
	}
	url, stop, served := serveOnLoopback(t, s)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	go func() {
		resp, err := c.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "a running generation", func() bool { return s.Stats().Running == 1 })
	stop()
	if err := <-served; err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("Serve: %v, want the shutdown timeout error", err)
	}
	waitFor(t, "the generation to be cancelled", func() bool { return f.cancelled.Load() == 1 })
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		f := &fakeEngine{tmpl: tinyTemplate(t)}
		s, err := New(Config{MaxConcurrency: 2, Models: oneModel("m", f, &fakeEngine{})})
		if err != nil {
			t.Fatal(err)
		}
		url, stop, served := serveOnLoopback(t, s)
		c := &http.Client{Transport: &http.Transport{}}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, i%2 == 0)
				resp, err := c.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Read(make([]byte, 10)) // read a little, then drop it
				resp.Body.Close()
			}()
		}
		wg.Wait()
		c.CloseIdleConnections()
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	var after int
	waitFor(t, "goroutines to end", func() bool {
		after = runtime.NumGoroutine()
		return after <= before
	})
	if after > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// A generation may outlast the time allowed for reading the request body.
func TestLongGenerationOutlastsBodyTimeout(t *testing.T) {
	f := &fakeEngine{gate: make(chan struct{})}
	s, err := New(Config{Models: oneModel("m", f)})
	if err != nil {
		t.Fatal(err)
	}
	s.bodyTimeout = 20 * time.Millisecond
	url, _, _ := serveOnLoopback(t, s)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	go func() {
		waitFor(t, "a running generation", func() bool { return s.Stats().Running == 1 })
		time.Sleep(10 * s.bodyTimeout)
		close(f.gate)
	}()
	status, body, _ := post(t, c, url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 || f.cancelled.Load() != 0 {
		t.Errorf("status %d, %d cancelled: %v", status, f.cancelled.Load(), body)
	}
}

func TestChatTemplateKwargs(t *testing.T) {
	f := &fakeEngine{tmpl: tinyTemplate(t)}
	_, ts := testServer(t, Config{Models: oneModel("m", f)})
	tests := []struct {
		kwargs string
		suffix string
	}{
		{`{}`, "<|im_start|>assistant\n"},
		{`{"enable_thinking": false}`, "<|im_start|>assistant\n<think>\n\n</think>\n\n"},
	}
	for _, tc := range tests {
		status, body, _ := post(t, ts.Client(), ts.URL+"/v1/chat/completions",
			`{"chat_template_kwargs":`+tc.kwargs+`,"messages":[{"role":"user","content":"hi"}]}`)
		if status != 200 {
			t.Fatalf("%s: %d %v", tc.kwargs, status, body)
		}
		if p := f.lastPrompt(); !strings.HasSuffix(p, tc.suffix) {
			t.Errorf("%s: prompt ends %q, want %q", tc.kwargs, p[max(0, len(p)-40):], tc.suffix)
		}
	}
}

// TestNestedUnknownFields: a misspelled key inside a message, a tool call or
// a tool definition is refused with a 400 naming it, as one at the top level
// is; chat templates would otherwise never read it and nobody would know.
// The keys OpenAI clients send back with an assistant message are accepted.
func TestNestedUnknownFields(t *testing.T) {
	_, ts := testServer(t, Config{Models: []Model{{Name: "m", Engines: []Engine{&fakeEngine{tmpl: tinyTemplate(t)}}}}})
	c := ts.Client()
	url := ts.URL + "/v1/chat/completions"
	tool := `{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":true}}`
	call := `{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}`
	refused := []struct{ name, body, field, param string }{
		{"message key", `{"model":"m","messages":[{"role":"user","content":"hi","nmae":"x"}]}`, "nmae", "messages[0]"},
		{"tool key", `{"model":"m","tools":[{"type":"function","function":{"name":"f"},"strictt":true}],"messages":[{"role":"user","content":"hi"}]}`, "strictt", "tools[0]"},
		{"tool function key", `{"model":"m","tools":[{"type":"function","function":{"name":"f","paramters":{}}}],"messages":[{"role":"user","content":"hi"}]}`, "function.paramters", "tools[0]"},
		{"tool call key", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"},"extra":1}]}]}`, "tool_calls[0].extra", "messages[1]"},
		{"tool call function key", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","args":"{}"}}]}]}`, "tool_calls[0].function.args", "messages[1]"},
		{"refusal with text", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"x","refusal":"no"}]}`, "refusal", "messages[1]"},
	}
	for _, tc := range refused {
		status, body, _ := post(t, c, url, tc.body)
		e, _ := body["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if status != 400 || !strings.Contains(msg, `"`+tc.field+`"`) || e["param"] != tc.param {
			t.Errorf("%s: status %d, error %v; want 400 naming %q, param %s", tc.name, status, e, tc.field, tc.param)
		}
	}
	accepted := `{"model":"m","tools":[` + tool + `],"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi","name":"ann"},` +
		`{"role":"assistant","content":null,"refusal":null,"annotations":[],"tool_calls":[` + call + `]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"{}"}]}`
	if status, body, _ := post(t, c, url, accepted); status != 200 {
		t.Errorf("a well-formed conversation was refused: %d %v", status, body)
	}
}

// TestChatTemplateKwargsUnread: a chat_template_kwargs key the model's
// template never names (a misspelled enable_thinking) is refused, not
// passed to a template that cannot read it.
func TestChatTemplateKwargsUnread(t *testing.T) {
	tmpl := tinyTemplate(t)
	_, ts := testServer(t, Config{Models: []Model{{Name: "m", Engines: []Engine{&fakeEngine{tmpl: tmpl}}, TemplateSource: tmpl.Source}}})
	url := ts.URL + "/v1/chat/completions"
	status, body, _ := post(t, ts.Client(), url, `{"model":"m","chat_template_kwargs":{"enable_thinkng":false},"messages":[{"role":"user","content":"hi"}]}`)
	e, _ := body["error"].(map[string]any)
	if msg, _ := e["message"].(string); status != 400 || !strings.Contains(msg, `"enable_thinkng"`) || e["param"] != "chat_template_kwargs" {
		t.Errorf("misspelled kwarg: %d %v", status, body)
	}
	if status, body, _ := post(t, ts.Client(), url, `{"model":"m","chat_template_kwargs":{"enable_thinking":false},"messages":[{"role":"user","content":"hi"}]}`); status != 200 {
		t.Errorf("enable_thinking refused: %d %v", status, body)
	}
	for name, want := range map[string]bool{"enable_thinking": true, "thinking": false, "enable": false, "_thinking": false} {
		if got := chat.NamesIdentifier("{%- if enable_thinking is defined %}", name); got != want {
			t.Errorf("NamesIdentifier(%q) = %v", name, got)
		}
	}
}
