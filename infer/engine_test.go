package infer

import (
	"context"
	"errors"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/compute/cpu/cputest"
)

func loadTiny(t *testing.T) *Engine {
	t.Helper()
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return onCPU(t, e)
}

// onCPU puts e's generation on the CPU backend.
func onCPU(t testing.TB, e *Engine) *Engine {
	t.Helper()
	if err := e.UseDevice(cputest.Open(), false, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// TestGenerateNeedsBackend: an engine given no backend says so instead of
// generating.
func TestGenerateNeedsBackend(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if e.Device() != "" {
		t.Errorf("a fresh engine is on %q", e.Device())
	}
	if _, err := e.Generate(Request{Prompt: "Once upon a time", MaxTokens: 2}); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("got %v, want ErrNoBackend", err)
	}
	onCPU(t, e)
	if e.Device() != "cpu" {
		t.Fatalf("after UseDevice the engine is on %q", e.Device())
	}
	if res, err := e.Generate(Request{Prompt: "Once upon a time", MaxTokens: 2}); err != nil || len(res.Tokens) == 0 {
		t.Fatalf("generated %v, %v", res.Tokens, err)
	}
}

func TestGenerateContext(t *testing.T) {
	e := loadTiny(t)
	prompt, err := e.Prompt([]chat.Message{chat.NewMessage("user", "hello")}, chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Sampling at a high temperature keeps the random model from hitting a
	// stop token early, so the length limit or the cancel decides.
	sample := SampleOptions{Temperature: 5, Seed: 1}
	full, err := e.Generate(Request{Prompt: prompt, MaxTokens: 40, Sample: sample})
	if err != nil {
		t.Fatal(err)
	}
	if full.PromptTokens != e.CountTokens(prompt) {
		t.Errorf("PromptTokens %d, CountTokens %d", full.PromptTokens, e.CountTokens(prompt))
	}
	if len(full.Tokens) < 10 {
		t.Skipf("the tiny model stopped after %d tokens; cancel test needs more", len(full.Tokens))
	}

	tests := []struct {
		name      string
		cancelAt  int // cancel after this many OnText calls; 0: before starting
		maxTokens int
	}{
		{"before start", 0, 40},
		{"after 3 pieces", 3, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			if tc.cancelAt == 0 {
				cancel()
			}
			res, err := e.GenerateContext(ctx, Request{Prompt: prompt, MaxTokens: tc.maxTokens, Sample: sample,
				OnText: func(string) {
					calls++
					if calls == tc.cancelAt {
						cancel()
					}
				}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if res.FinishReason != "cancelled" {
				t.Errorf("FinishReason %q", res.FinishReason)
			}
			if len(res.Tokens) > tc.cancelAt+1 || len(res.Tokens) >= len(full.Tokens) {
				t.Errorf("%d tokens after cancelling at piece %d (uncancelled run: %d)", len(res.Tokens), tc.cancelAt, len(full.Tokens))
			}
			// Same seed: the cancelled run is a prefix of the full one.
			for i, id := range res.Tokens {
				if id != full.Tokens[i] {
					t.Fatalf("token %d: %d, full run %d", i, id, full.Tokens[i])
				}
			}
		})
	}
}
