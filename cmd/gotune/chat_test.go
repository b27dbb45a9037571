package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/chat"
	"gotune/compute/cpu/cputest"
	"gotune/infer"
)

func TestChatPipedInput(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := "hello\n\n/bogus\n/reset\nhi again\n/exit\n/never\n"
	var out, errb bytes.Buffer
	err = chatMain(context.Background(), nil, []string{dir, "--max-new-tokens", "6", "--system", "Be terse.", "--temperature", "0.7", "--seed", "3"},
		strings.NewReader(in), &out, &errb)
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, errb.String())
	}
	se := errb.String()
	if !strings.Contains(se, "unknown command /bogus") || !strings.Contains(se, "(conversation cleared)") || strings.Contains(se, "/never") {
		t.Errorf("stderr:\n%s", se)
	}
	// Two replies, each ended by a newline (a reply may hold newlines too).
	if n := strings.Count(out.String(), "\n"); n < 2 {
		t.Errorf("stdout has %d lines, want 2 replies: %q", n, out.String())
	}
}

func TestChatSessionHistory(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := infer.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	onCPU(t, e)
	s := &chatSession{e: e, system: "sys", maxNew: 4}
	s.reset()
	var out bytes.Buffer
	ctx := context.Background()
	res, err := s.send(ctx, "first", &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != res.Text {
		t.Errorf("streamed %q, reply %q", out.String(), res.Text)
	}
	if _, err := s.send(ctx, "second", &out); err != nil {
		t.Fatal(err)
	}
	if got := roles(s.msgs); got != "system user assistant user assistant" {
		t.Fatalf("history roles %q", got)
	}
	if s.msgs[1].Content() != "first" || s.msgs[2].Content() != res.Text {
		t.Errorf("history %v", s.msgs)
	}

	// A conversation longer than the 512-token context loses its oldest turns.
	s.maxNew = 400
	s.msgs = append(s.msgs, chat.NewMessage("user", "old"), chat.NewMessage("assistant", strings.Repeat("word ", 120)))
	if _, err := s.send(ctx, "third", &out); err != nil {
		t.Fatal(err)
	}
	if s.msgs[0].Content() != "sys" || s.msgs[1].Content() == "first" {
		t.Errorf("oldest turn kept: %v", roles(s.msgs))
	}
	if last := s.msgs[len(s.msgs)-2]; last.Content() != "third" {
		t.Errorf("the new message is missing: %v", s.msgs)
	}
	// A message that cannot fit at all is refused and not kept.
	n := len(s.msgs)
	if _, err := s.send(ctx, strings.Repeat("word ", 200), &out); err == nil || len(s.msgs) != n {
		t.Errorf("oversized message: err %v, history %d -> %d", err, n, len(s.msgs))
	}

	s.reset()
	if got := roles(s.msgs); got != "system" {
		t.Errorf("after reset %q", got)
	}
}

func roles(msgs []chat.Message) string {
	var r []string
	for _, m := range msgs {
		r = append(r, m.Role())
	}
	return strings.Join(r, " ")
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args      []string
		model     string
		adapter   string
		wantError bool
	}{
		{[]string{"M", "--adapter", "A"}, "M", "A", false},
		{[]string{"--adapter", "A", "M"}, "M", "A", false},
		{[]string{"--model", "M"}, "M", "", false},
		{[]string{"M", "--model", "M"}, "M", "", false},
		{[]string{"M", "N"}, "", "", true},
		{[]string{"M", "--model", "N"}, "", "", true},
		{[]string{"M", "--nope"}, "", "", true},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		model := fs.String("model", "", "")
		adapter := fs.String("adapter", "", "")
		pos, err := parseInterleaved(fs, tc.args)
		if err == nil {
			*model, err = positionalModel(*model, pos)
		}
		if (err != nil) != tc.wantError || (err == nil && (*model != tc.model || *adapter != tc.adapter)) {
			t.Errorf("%q: model %q adapter %q err %v", tc.args, *model, *adapter, err)
		}
	}
}

// firstWrite signals once, at the first write.
type firstWrite struct {
	bytes.Buffer
	once chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	select {
	case <-w.once:
	default:
		close(w.once)
	}
	return w.Buffer.Write(p)
}

// TestChatInterruptStopsReply: Ctrl-C while a reply is being written stops
// that reply and the chat goes on with the next line; the interrupted turn
// is not kept.
func TestChatInterruptStopsReply(t *testing.T) {
	dir, err := assets.ModelDir(assets.DefaultModel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	intr := make(chan os.Signal, 1)
	out := &firstWrite{once: make(chan struct{})}
	go func() {
		<-out.once // the first reply has started streaming
		intr <- os.Interrupt
	}()
	var errb bytes.Buffer
	err = chatMain(context.Background(), intr, []string{dir, "--max-new-tokens", "400", "--temperature", "1", "--seed", "5"},
		strings.NewReader("tell me a long story\nsecond question\n"), out, &errb)
	if err != nil {
		t.Fatalf("chat ended with %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "(reply interrupted)") {
		t.Fatalf("no interruption reported; stderr:\n%s", errb.String())
	}
	// The second line was answered after the interruption: two reply
	// endings on stdout.
	if n := strings.Count(out.String(), "\n"); n < 2 {
		t.Errorf("stdout has %d reply endings, want 2 (the chat went on): %q", n, out.String())
	}
}

// onCPU puts e's generation on the CPU backend.
func onCPU(t testing.TB, e *infer.Engine) {
	t.Helper()
	if err := e.UseDevice(cputest.Open(), false, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
}
