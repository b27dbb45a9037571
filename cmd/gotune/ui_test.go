package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestUIRefusesOpenAddressWithoutToken(t *testing.T) {
	t.Setenv("GOTUNE_UI_TOKEN", "")
	var out, errb bytes.Buffer
	err := uiMain(context.Background(), []string{"--host", "0.0.0.0", "--port", "0"}, &out, &errb, nil)
	if err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("0.0.0.0 without a token: %v", err)
	}
	if err := uiMain(context.Background(), []string{"somewhere"}, &out, &errb, nil); err == nil || !strings.Contains(err.Error(), "--root") {
		t.Errorf("a positional argument: %v", err)
	}
}

func TestUIServesThePage(t *testing.T) {
	t.Setenv("GOTUNE_HOME", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- uiMain(ctx, []string{"--port", "0", "--root", t.TempDir()}, &out, io.Discard, func(u string) { urls <- u })
	}()
	var u string
	select {
	case u = <-urls:
	case err := <-done:
		t.Fatalf("gotune ui ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gotune ui did not start")
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`<script src="/static/app.js"`)) {
		t.Errorf("page: %d %.200s", resp.StatusCode, page)
	}
	// The bundled model is offered without any --root pointing at it.
	resp, err = http.Get(u + "api/models")
	if err != nil {
		t.Fatal(err)
	}
	models, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(models, []byte("tiny-qwen3")) {
		t.Errorf("models: %s", models)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
