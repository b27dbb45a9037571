package serve

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gotune/infer"
)

// BenchmarkChatTiny measures a whole request over loopback HTTP with the
// bundled tiny model: 16 greedy tokens, plain and streamed.
func BenchmarkChatTiny(b *testing.B) {
	dir, err := tinyDir()
	if err != nil {
		b.Fatal(err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		b.Fatal(err)
	}
	onCPU(b, e)
	s, err := New(Config{Models: []Model{FromEngines("tiny", e)}})
	if err != nil {
		b.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		b.Run(fmt.Sprintf("stream=%v", stream), func(b *testing.B) {
			url, stop, served := serveOnLoopbackB(b, s)
			c := &http.Client{Transport: &http.Transport{}}
			body := fmt.Sprintf(`{"stream":%v,"max_tokens":16,"temperature":0,"messages":[{"role":"user","content":"What does LoRA train?"}]}`, stream)
			for b.Loop() {
				resp, err := c.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 4096)
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			c.CloseIdleConnections()
			stop()
			<-served
		})
	}
}

func BenchmarkParser(b *testing.B) {
	text := strings.Repeat("some words of content ", 50) + "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>"
	pieces := strings.SplitAfter(text, " ")
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		p := NewParser(FormatHermes, true, false)
		for _, s := range pieces {
			p.Push(s)
		}
		if _, calls := p.Finish(); len(calls) != 1 {
			b.Fatal("no call")
		}
	}
}

// BenchmarkOverhead is the server's own cost per request: a fake engine
// that answers two pieces at once, over loopback HTTP.
func BenchmarkOverhead(b *testing.B) {
	s, err := New(Config{Models: oneModel("m", &fakeEngine{})})
	if err != nil {
		b.Fatal(err)
	}
	url, stop, served := serveOnLoopbackB(b, s)
	defer func() { stop(); <-served }()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	body := `{"messages":[{"role":"user","content":"hi"}]}`
	for b.Loop() {
		resp, err := c.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}
