package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotune/assets"
)

// TestNodeSDKWalkthrough is the user's walk-through end to end: a
// LLaMA-Factory style data folder (dataset_info.json naming a glaive-style
// tool-call dataset, an Alpaca and a ShareGPT dataset), a short LoRA run on
// the bundled model through `gotune train`, `gotune serve` with the adapter,
// and the official OpenAI Node SDK (scripts/sdk/check.mjs) checking forced
// tool calls, structured output, streaming and typed errors against it.
//
// It needs node and the SDK: `cd scripts/sdk && npm ci`.
func TestNodeSDKWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and serves a model; skipped with -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the OpenAI Node SDK check needs it")
	}
	sdkDir, err := filepath.Abs(filepath.Join("..", "..", "scripts", "sdk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "openai", "package.json")); err != nil {
		t.Skip("the OpenAI Node SDK is not installed: run `npm ci` in scripts/sdk")
	}

	tmp := t.TempDir()
	t.Setenv("GOTUNE_HOME", filepath.Join(tmp, "home"))
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(tmp, "tiny-qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(tmp, "data")
	writeLlamaFactoryData(t, dataDir)
	out := filepath.Join(tmp, "saves", "tool-lora")
	cfg := fmt.Sprintf(`model_name_or_path: %s
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_alpha: 16
lora_target: all
dataset: glaive_toolcall_demo,alpaca_demo,sharegpt_demo
dataset_dir: %s
template: qwen3
cutoff_len: 512
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
learning_rate: 1.0e-2
num_train_epochs: 5
lr_scheduler_type: cosine
warmup_ratio: 0.1
logging_steps: 5
output_dir: %s
overwrite_output_dir: true
seed: 42
`, modelDir, dataDir, out)
	yamlPath := filepath.Join(tmp, "tool_lora.yaml")
	if err := os.WriteFile(yamlPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"train", yamlPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("gotune train: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// Nothing dropped, filtered or cut on the way: every record trains whole.
	var report struct {
		Sources []struct {
			Name               string
			Records, Bad, Kept int
			Samples, Mixed     int
			ToolCalls          int `json:"tool_calls"`
			Truncated          int
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "data_report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"glaive_toolcall_demo": 6, "alpaca_demo": 4, "sharegpt_demo": 3}
	for _, s := range report.Sources {
		if n, ok := want[s.Name]; !ok || s.Records != n || s.Kept != n || s.Samples != n || s.Mixed != n || s.Bad != 0 {
			t.Errorf("%s: %d records, %d bad, %d kept, %d samples, %d mixed; want %d of each and none bad",
				s.Name, s.Records, s.Bad, s.Kept, s.Samples, s.Mixed, n)
		}
		if s.Truncated > 0 {
			t.Errorf("%s: %d samples were cut to cutoff_len 512", s.Name, s.Truncated)
		}
		delete(want, s.Name)
	}
	if len(want) > 0 || len(report.Sources) != 3 {
		t.Errorf("data report sources %+v", report.Sources)
	}
	if glaive := report.Sources[0]; glaive.ToolCalls != 6 {
		t.Errorf("glaive_toolcall_demo: %d tool calls read, want 6", glaive.ToolCalls)
	}
	if s := stderr.String(); strings.Contains(strings.ToLower(s), "warning") {
		t.Errorf("train warned:\n%s", s)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- serveMain(ctx, []string{modelDir, "--port", "0", "--adapter", "tool=" + out, "--api-key", "walkthrough"},
			&logs, func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}

	nctx, ncancel := context.WithTimeout(ctx, 60*time.Second)
	defer ncancel()
	cmd := exec.CommandContext(nctx, node, filepath.Join(sdkDir, "check.mjs"), base, "tool")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), "OPENAI_API_KEY=walkthrough")
	var nodeErr bytes.Buffer
	cmd.Stderr = &nodeErr
	nodeOut, runErr := cmd.Output()
	checks := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(nodeOut))
	for sc.Scan() {
		var line struct {
			Check string
			OK    bool
			Error string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("check.mjs printed a line that is not JSON: %s", sc.Text())
			continue
		}
		checks[line.Check] = line.OK
		if line.OK {
			t.Logf("%s", sc.Text())
		} else {
			t.Errorf("SDK check %s: %s", line.Check, line.Error)
		}
	}
	for _, name := range []string{"models", "tool_choice_required", "tool_choice_named", "response_format_json_schema",
		"stream_text", "stream_json_schema", "stream_tool_calls", "unknown_field_400", "unknown_nested_field_400", "unknown_message_field_400",
		"tool_result_round_trip", "unknown_template_kwarg_400"} {
		if _, ok := checks[name]; !ok {
			t.Errorf("check %s did not run", name)
		}
	}
	if runErr != nil && !t.Failed() {
		t.Errorf("node check.mjs: %v\n%s", runErr, nodeErr.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// writeLlamaFactoryData writes a data folder as LLaMA-Factory's: a
// dataset_info.json and three datasets in its formats. The tool-call records
// use glaive's layout (the tools as a JSON string of bare functions, a
// function_call turn whose value is a JSON string) and the tools that
// scripts/sdk/check.mjs offers.
func writeLlamaFactoryData(t *testing.T, dir string) {
	t.Helper()
	tools := `[{"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo", "Lima"]}, "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": false}}, ` +
		`{"name": "convert", "description": "Convert money", "parameters": {"type": "object", "properties": {"amount": {"type": "integer"}, "to": {"enum": ["USD", "EUR"]}}, "required": ["amount", "to"], "additionalProperties": false}}]`
	type turn struct {
		From  string `json:"from"`
		Value string `json:"value"`
	}
	type record struct {
		Conversations []turn `json:"conversations"`
		Tools         string `json:"tools"`
	}
	var glaive []record
	add := func(question, call, observation, answer string) {
		glaive = append(glaive, record{Conversations: []turn{
			{"human", question}, {"function_call", call}, {"observation", observation}, {"gpt", answer},
		}, Tools: tools})
	}
	add("What's the weather in Paris right now?", `{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}`, `{"temperature": 12}`, "It is 12 degrees in Paris.")
	add("Is it cold in Tokyo today, in Fahrenheit?", `{"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "F"}}`, `{"temperature": 41}`, "Yes: 41 degrees Fahrenheit.")
	add("Tell me the temperature in Lima, please.", `{"name": "get_weather", "arguments": {"city": "Lima", "unit": "C"}}`, `{"temperature": 19}`, "Lima is at 19 degrees.")
	add("How much is 100 dollars in euros?", `{"name": "convert", "arguments": {"amount": 100, "to": "EUR"}}`, `{"result": 92}`, "100 dollars are 92 euros.")
	add("Change 25 euros into US dollars.", `{"name": "convert", "arguments": {"amount": 25, "to": "USD"}}`, `{"result": 27}`, "That is 27 US dollars.")
	add("Convert 7000 yen to dollars for me.", `{"name": "convert", "arguments": {"amount": 7000, "to": "USD"}}`, `{"result": 47}`, "About 47 dollars.")
	files := map[string]any{
		"glaive_toolcall_demo.json": glaive,
		"alpaca_demo.json": []map[string]string{
			{"instruction": "Name the capital of France.", "input": "", "output": "Paris."},
			{"instruction": "Translate to German.", "input": "Good morning", "output": "Guten Morgen."},
			{"instruction": "What do bees make?", "input": "", "output": "Honey."},
			{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5."},
		},
		"sharegpt_demo.json": []map[string]any{
			{"conversations": []turn{{"human", "Hi there"}, {"gpt", "Hello! How can I help?"}, {"human", "Tell me a color."}, {"gpt", "Blue."}}, "system": "You are terse."},
			{"conversations": []turn{{"human", "What is two plus two?"}, {"gpt", "Four."}}},
			{"conversations": []turn{{"human", "Name a fruit."}, {"gpt", "Apple."}}},
		},
		"dataset_info.json": map[string]any{
			"glaive_toolcall_demo": map[string]any{"file_name": "glaive_toolcall_demo.json", "formatting": "sharegpt",
				"columns": map[string]string{"messages": "conversations", "tools": "tools"}},
			"alpaca_demo": map[string]any{"file_name": "alpaca_demo.json"},
			"sharegpt_demo": map[string]any{"file_name": "sharegpt_demo.json", "formatting": "sharegpt",
				"columns": map[string]string{"messages": "conversations", "system": "system"}},
		},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
