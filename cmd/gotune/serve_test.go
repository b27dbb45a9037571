package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gotune/assets"
	"gotune/model"
	"gotune/peft"
)

// syncBuffer lets the test read what the server logs while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeCommand(t *testing.T) {
	tmp := t.TempDir()
	dir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(tmp, "tiny-qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	// A LoRA adapter with non-zero weights, so that it changes the replies.
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all-linear"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range set.Params() {
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64()) * 0.5
		}
	}
	adapterDir := filepath.Join(tmp, "lora")
	if err := set.Save(adapterDir); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- serveMain(ctx, []string{dir, "--port", "0", "--adapter", "sql=" + adapterDir, "--api-key", "k", "--max-concurrency", "2"},
			&logs, func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("not bound to loopback: %s", base)
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	call := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, models := call("GET", "/v1/models", "")
	if status != 200 {
		t.Fatalf("models: %d %v", status, models)
	}
	var ids []string
	for _, d := range models["data"].([]any) {
		ids = append(ids, d.(map[string]any)["id"].(string))
	}
	if strings.Join(ids, ",") != "tiny-qwen3,sql" {
		t.Errorf("models %v", ids)
	}
	replies := map[string]string{}
	for _, name := range ids {
		status, body := call("POST", "/v1/chat/completions",
			`{"model":"`+name+`","max_tokens":8,"temperature":0,"messages":[{"role":"user","content":"Hi"}]}`)
		if status != 200 || body["model"] != name {
			t.Fatalf("%s: %d %v", name, status, body)
		}
		msg := body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		replies[name], _ = msg["content"].(string)
	}
	if replies["sql"] == replies["tiny-qwen3"] {
		t.Errorf("the adapter did not change the greedy reply: %q", replies["sql"])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "serving tiny-qwen3, sql") || !strings.Contains(l, "stopped") {
		t.Errorf("log:\n%s", l)
	}
}

func TestAdapterFlag(t *testing.T) {
	var a adapterFlags
	for _, v := range []string{"sql=/x/sql-lora", "/runs/chat-v2"} {
		if err := a.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if a.String() != "sql=/x/sql-lora,chat-v2=/runs/chat-v2" {
		t.Errorf("got %s", a.String())
	}
	if err := a.Set("=dir"); err == nil {
		t.Error("empty name accepted")
	}
}
