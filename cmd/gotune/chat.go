package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"gotune/assets"
	"gotune/chat"
	"gotune/infer"
)

func runChat(args []string, stdout, stderr io.Writer) error {
	// Ctrl-C stops the reply being written (or, at the prompt, the chat);
	// SIGTERM ends the chat at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	intr := make(chan os.Signal, 1)
	signal.Notify(intr, os.Interrupt)
	defer signal.Stop(intr)
	return chatMain(ctx, intr, args, os.Stdin, stdout, stderr)
}

const chatHelp = `commands: /reset clears the conversation, /system TEXT sets the system message (and resets),
          /exit or /quit leaves (so does end of input), /help shows this`

// chatMain runs the chat loop: one user message per input line, the reply
// streamed to stdout, prompts and statistics on stderr when input is a
// terminal.
func chatMain(ctx context.Context, intr <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "usage: gotune chat [MODEL] [flags]\n\nChat with a model folder, .gguf file or Hub repo id (default: the bundled "+
		assets.DefaultModel+").\nMODEL and flags may come in any order.\n"+chatHelp, args, stdout, stderr)
	modelDir := fs.String("model", "", "model folder (or give it as the first argument)")
	adapter := fs.String("adapter", "", "PEFT adapter folder to attach")
	system := fs.String("system", "", "system message")
	maxNew := fs.Int("max-new-tokens", 512, "tokens to generate at most per reply")
	sample := sampleFlags(fs)
	device := fs.String("device", "auto", "cpu, cuda (bf16 on an NVIDIA GPU) or auto (the GPU when there is one and the model can run there)")
	kwargs := templateKwargs{}
	fs.Var(kwargs, "template-kwarg", "KEY=VALUE passed to the chat template (JSON value or plain text), e.g. enable_thinking=false; repeatable")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelDir, err = positionalModel(*modelDir, pos); err != nil {
		return err
	}
	dir, err := modelPath(*modelDir)
	if err != nil {
		return err
	}
	e, err := infer.Load(dir, *adapter)
	if err != nil {
		return err
	}
	release, err := useDevice(e, *device, stderr)
	if err != nil {
		return err
	}
	defer release()
	if e.TemplateErr != nil {
		return e.TemplateErr // a template that fails to parse is not a missing one
	}
	if e.Template == nil {
		return fmt.Errorf("%s has no chat template; use 'gotune generate --raw' for plain text", dir)
	}
	if err := kwargs.check(e); err != nil {
		return err
	}
	s := &chatSession{e: e, system: *system, maxNew: *maxNew, sample: *sample, extra: kwargs.extra()}
	s.reset()

	ctx, cancel := context.WithCancel(ctx) // also ends the line reader
	defer cancel()
	interactive := isTerminal(stdin)
	if interactive {
		fmt.Fprintf(stderr, "gotune chat with %s. %s\n", dir, "/help for commands, Ctrl-D to leave.")
	}
	lines, readErr := readLines(ctx, stdin)
	for {
		if interactive {
			fmt.Fprint(stderr, "> ")
		}
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			fmt.Fprintln(stderr)
			return nil
		case <-intr: // Ctrl-C at the prompt leaves
			fmt.Fprintln(stderr)
			return nil
		}
		if !ok {
			break
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if cmd, arg, _ := strings.Cut(line, " "); strings.HasPrefix(cmd, "/") {
			switch cmd {
			case "/exit", "/quit":
				return nil
			case "/reset":
				s.reset()
				fmt.Fprintln(stderr, "(conversation cleared)")
			case "/system":
				s.system = strings.TrimSpace(arg)
				s.reset()
				fmt.Fprintln(stderr, "(system message set, conversation cleared)")
			case "/help":
				fmt.Fprintln(stderr, chatHelp)
			default:
				fmt.Fprintf(stderr, "unknown command %s; %s\n", cmd, "/help lists them")
			}
			continue
		}
		start := time.Now()
		// Ctrl-C during the reply stops that reply only: the turn is
		// dropped from the history and the chat goes on.
		replyCtx, stopReply := context.WithCancel(ctx)
		done := make(chan struct{})
		var interrupted atomic.Bool
		go func() {
			select {
			case <-intr:
				interrupted.Store(true)
				stopReply()
			case <-done:
			}
		}()
		res, err := s.send(replyCtx, line, stdout)
		close(done)
		stopReply()
		fmt.Fprintln(stdout)
		if errors.Is(err, context.Canceled) {
			if ctx.Err() != nil {
				return nil // the chat itself was ended
			}
			if interrupted.Load() {
				fmt.Fprintln(stderr, "(reply interrupted)")
				continue
			}
		}
		if err != nil {
			return err
		}
		if interactive {
			el := time.Since(start).Seconds()
			fmt.Fprintf(stderr, "[%d tokens, %.1f tokens/s, %s]\n", len(res.Tokens), float64(len(res.Tokens))/max(el, 1e-9), res.FinishReason)
		}
	}
	return <-readErr
}

// readLines delivers input lines on a channel, so that waiting for one can
// be interrupted; it stops when ctx ends or the input does.
func readLines(ctx context.Context, r io.Reader) (<-chan string, <-chan error) {
	lines, errc := make(chan string), make(chan error, 1)
	go func() {
		defer close(lines)
		in := bufio.NewScanner(r)
		in.Buffer(make([]byte, 64<<10), 4<<20)
		for in.Scan() {
			select {
			case lines <- in.Text():
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
		errc <- in.Err()
	}()
	return lines, errc
}

// chatSession keeps a conversation's history.
type chatSession struct {
	e      *infer.Engine
	system string
	maxNew int
	sample infer.SampleOptions
	extra  map[string]any // chat template variables
	msgs   []chat.Message
}

func (s *chatSession) reset() {
	s.msgs = s.msgs[:0]
	if s.system != "" {
		s.msgs = append(s.msgs, chat.NewMessage("system", s.system))
	}
}

// contextLimit is the model's context length (0 when unknown).
func (s *chatSession) contextLimit() int {
	if s.e.Model != nil && s.e.Model.Cfg != nil {
		return s.e.Model.Cfg.MaxPositions
	}
	return 0
}

// send adds a user message, streams the reply to out and adds it to the
// history. When the conversation outgrows the model's context, the oldest
// turns are dropped (the system message stays).
func (s *chatSession) send(ctx context.Context, text string, out io.Writer) (infer.Result, error) {
	msgs := append(append([]chat.Message(nil), s.msgs...), chat.NewMessage("user", text))
	prompt, msgs, err := s.fit(msgs)
	if err != nil {
		return infer.Result{}, err
	}
	maxNew := s.maxNew
	if limit := s.contextLimit(); limit > 0 {
		maxNew = min(maxNew, limit-s.e.CountTokens(prompt))
	}
	res, err := s.e.GenerateContext(ctx, infer.Request{Prompt: prompt, MaxTokens: maxNew, Sample: s.sample,
		OnText: func(t string) { fmt.Fprint(out, t) }})
	if err != nil {
		return res, err
	}
	s.msgs = append(msgs, chat.NewMessage("assistant", res.Text))
	return res, nil
}

// fit renders msgs, dropping the oldest turns until the prompt and the
// reply fit the model's context.
func (s *chatSession) fit(msgs []chat.Message) (string, []chat.Message, error) {
	limit := s.contextLimit()
	// A reply gets --max-new-tokens, or half the context when that is
	// smaller, so long histories are trimmed rather than refused.
	reserve := s.maxNew
	if limit > 0 {
		reserve = min(reserve, limit/2)
	}
	for {
		prompt, err := s.e.Prompt(msgs, chat.Options{Extra: s.extra})
		if err != nil {
			return "", nil, err
		}
		if limit <= 0 || s.e.CountTokens(prompt)+reserve <= limit {
			return prompt, msgs, nil
		}
		first := 0
		if len(msgs) > 0 && msgs[0].Role() == "system" {
			first = 1
		}
		if len(msgs)-first <= 1 {
			return "", nil, fmt.Errorf("the message (%d tokens) leaves no room for a %d-token reply in the model's %d-token context", s.e.CountTokens(prompt), reserve, limit)
		}
		// Drop the oldest user turn and the replies that followed it.
		end := first + 1
		for end < len(msgs) && msgs[end].Role() != "user" {
			end++
		}
		msgs = append(msgs[:first], msgs[end:]...)
	}
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
