package reward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// jsonLines is the input of an external scorer: one JSON object a line.
func jsonLines(samples []Sample) ([]byte, error) {
	var b bytes.Buffer
	for i, s := range samples {
		line, err := JSONLine(s)
		if err != nil {
			return nil, fmt.Errorf("sample %d (%s): %w", i, s.Where, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// parseScores reads one number per sample from a scorer's output: one a
// line, or (http) a JSON array or {"rewards": [...]}. Each bad value names
// its sample.
func parseScores(reward, from string, out []byte, samples []Sample) ([]float64, error) {
	text := strings.TrimSpace(string(out))
	var nums []float64
	if strings.HasPrefix(text, "[") || strings.HasPrefix(text, "{") {
		var wrapped struct {
			Rewards []float64 `json:"rewards"`
		}
		switch {
		case json.Unmarshal([]byte(text), &nums) == nil:
		case json.Unmarshal([]byte(text), &wrapped) == nil && wrapped.Rewards != nil:
			nums = wrapped.Rewards
		default:
			return nil, fmt.Errorf("reward %s: %s answered %s: want a JSON array of numbers, {\"rewards\": [...]}, or one number a line", reward, from, excerpt(text))
		}
	} else {
		var lines []string
		if text != "" {
			lines = strings.Split(text, "\n")
		}
		if len(lines) != len(samples) {
			return nil, fmt.Errorf("reward %s: %s gave %d lines for %d samples (want one number a line)%s; output %s", reward, from, len(lines), len(samples), batchStart(samples), excerpt(text))
		}
		for i, l := range lines {
			x, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
			if err != nil {
				return nil, sampleError(reward, i, samples[i], "%s gave %q on line %d, not a number", from, l, i+1)
			}
			nums = append(nums, x)
		}
	}
	if len(nums) != len(samples) {
		return nil, fmt.Errorf("reward %s: %s gave %d numbers for %d samples%s", reward, from, len(nums), len(samples), batchStart(samples))
	}
	for i, x := range nums {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, sampleError(reward, i, samples[i], "%s gave %v", from, x)
		}
	}
	return nums, nil
}

// command runs a program once per batch.
type command struct {
	name    string
	argv    []string
	timeout time.Duration
}

func (c *command) Name() string { return c.name }

func (c *command) Score(ctx context.Context, samples []Sample) ([]float64, error) {
	in, err := jsonLines(samples)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", c.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A child that keeps the pipes open after being killed must not hang
	// training.
	cmd.WaitDelay = time.Second
	prog := strings.Join(c.argv, " ")
	err = cmd.Run()
	first := batchStart(samples)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("reward %s: command %q timed out after %v scoring %d samples%s", c.name, prog, c.timeout, len(samples), first)
	case err != nil:
		return nil, fmt.Errorf("reward %s: command %q failed (%v) scoring %d samples%s; stderr: %s", c.name, prog, err, len(samples), first, excerpt(tail(stderr.String())))
	}
	return parseScores(c.name, fmt.Sprintf("command %q", prog), stdout.Bytes(), samples)
}

// batchStart names the batch's first sample, for failures of a whole batch.
func batchStart(samples []Sample) string {
	if len(samples) == 0 {
		return ""
	}
	return fmt.Sprintf("; the batch starts with %s (completion %s)", samples[0].Where, excerpt(samples[0].Completion))
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		return s[len(s)-400:]
	}
	return s
}

// httpScorer POSTs the batch as JSON lines.
type httpScorer struct {
	name, url string
	client    *http.Client
}

func newHTTP(name, url string, timeout time.Duration) *httpScorer {
	return &httpScorer{name: name, url: url, client: &http.Client{Timeout: timeout}}
}

func (h *httpScorer) Name() string { return h.name }

func (h *httpScorer) Score(ctx context.Context, samples []Sample) ([]float64, error) {
	in, err := jsonLines(samples)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", h.name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(in))
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", h.name, err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reward %s: POST %s with %d samples: %w", h.name, h.url, len(samples), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reward %s: POST %s: reading the reply: %w", h.name, h.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reward %s: POST %s answered %s: %s", h.name, h.url, resp.Status, excerpt(tail(string(body))))
	}
	return parseScores(h.name, "POST "+h.url, body, samples)
}
