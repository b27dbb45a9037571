package infer

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotune/assets"
	"gotune/chat"
	"gotune/compute/cpu/cputest"
)

// folderCase damages a copy of the bundled tiny model; the load, the prompt
// or the generation must then fail with an error containing want.
type folderCase struct {
	name   string
	damage func(t *testing.T, dir string)
	want   string
}

func writeIn(name, content string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(dir, name)
		os.RemoveAll(p)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fifoIn(name string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(dir, name)
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
	}
}

// editJSON rewrites one key of a JSON file in the folder.
func editJSON(name, key string, value any) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m[key] = value
		b, _ = json.Marshal(m)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func deepJSON(n int) string { return `{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}` }

// safetensorsWith writes model.safetensors as an 8-byte header length and
// the given header, followed by data bytes.
func safetensorsWith(headerLen uint64, header string, data int) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		b := binary.LittleEndian.AppendUint64(nil, headerLen)
		b = append(b, header...)
		b = append(b, make([]byte, data)...)
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func folderCases() []folderCase {
	const tmpl = "chat_template.jinja"
	bomb := func(name, src string) folderCase {
		return folderCase{"template " + name, writeIn(tmpl, "{% set ns = namespace(s='x', l=[1]) %}\n"+src), "line 2"}
	}
	cases := []folderCase{
		{"config hidden_size 2^40", editJSON("config.json", "hidden_size", 1<<40), "hidden_size"},
		{"config vocab_size 2^40", editJSON("config.json", "vocab_size", 1<<40), "vocab_size"},
		{"config layers 1e9", editJSON("config.json", "num_hidden_layers", 1000000000), "num_hidden_layers"},
		{"config intermediate 2^40", editJSON("config.json", "intermediate_size", 1<<40), "intermediate_size"},
		{"config heads 2^30", editJSON("config.json", "num_attention_heads", 1<<30), "num_attention_heads"},
		{"config negative heads", editJSON("config.json", "num_attention_heads", -4), "num_attention_heads"},
		{"config vocab mismatch", editJSON("config.json", "vocab_size", 4096), "model.embed_tokens.weight"},
		{"config layers mismatch", editJSON("config.json", "num_hidden_layers", 40), "model.layers.39"},
		{"config unknown model_type", editJSON("config.json", "model_type", "gpt2"), "model_type"},
		{"config layers as float", editJSON("config.json", "num_hidden_layers", 1.5), "config.json"},
		{"config deep nesting", writeIn("config.json", deepJSON(1<<20)), "nested deeper"},
		{"config not JSON", writeIn("config.json", "{"), "config.json"},
		{"config empty", writeIn("config.json", ""), "config.json"},
		{"config FIFO", fifoIn("config.json"), "not a regular file"},
		{"config a directory", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
			os.Mkdir(filepath.Join(dir, "config.json"), 0o755)
		}, "config.json"},
		{"weights FIFO", fifoIn("model.safetensors"), "not a regular file"},
		{"weights empty", writeIn("model.safetensors", ""), "model.safetensors"},
		{"weights garbage", writeIn("model.safetensors", strings.Repeat("\xff", 4096)), "model.safetensors"},
		{"weights header length 2^60", safetensorsWith(1<<60, "{}", 0), "model.safetensors"},
		{"weights header not JSON", safetensorsWith(8, "notjson!", 16), "model.safetensors"},
		{"weights header deep", safetensorsWith(2<<20, strings.Repeat("[", 1<<20)+strings.Repeat("]", 1<<20), 0), "model.safetensors"},
		{"weights offsets past the end", safetensorsWith(80, fmt.Sprintf("%-80s", `{"model.embed_tokens.weight":{"dtype":"F32","shape":[2048,64],"data_offsets":[0,524288]}}`), 16), "model.safetensors"},
		{"weights truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}, "model.safetensors"},
		{"weights pickle only", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
			os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("\x80\x02pickle"), 0o644)
		}, "safetensors"},
		{"tokenizer deep nesting", writeIn("tokenizer.json", deepJSON(1<<20)), "tokenizer.json"},
		{"tokenizer not JSON", writeIn("tokenizer.json", "[1,2"), "tokenizer.json"},
		{"tokenizer FIFO", fifoIn("tokenizer.json"), "not a regular file"},
		{"tokenizer ReDoS", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tokenizer.json")
			b, _ := os.ReadFile(p)
			var m map[string]any
			json.Unmarshal(b, &m)
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false}
			b, _ = json.Marshal(m)
			os.WriteFile(p, b, 0o644)
		}, "backtracks"},
		{"tokenizer added id 2^40", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tokenizer.json")
			b, _ := os.ReadFile(p)
			s := strings.Replace(string(b), `"added_tokens": [`, `"added_tokens": [{"id": 1099511627776, "content": "<|x|>", "special": true},`, 1)
			os.WriteFile(p, []byte(s), 0o644)
		}, "added_tokens"},
		{"tokenizer_config deep nesting", writeIn("tokenizer_config.json", deepJSON(1<<20)), "tokenizer_config.json"},
		{"tokenizer_config FIFO", fifoIn("tokenizer_config.json"), "not a regular file"},
		{"generation_config not JSON", writeIn("generation_config.json", "{"), "generation_config.json"},
		{"generation_config FIFO", fifoIn("generation_config.json"), "not a regular file"},
		{"template FIFO", fifoIn(tmpl), "not a regular file"},
		{"template parse error", writeIn(tmpl, "{% for m in messages %}\n{{ m.content }\n{% endfor %}"), "line 2"},
		{"template endless loops", writeIn(tmpl, "x\n{% for i in range(60000) %}{% for j in range(60000) %}{% endfor %}{% endfor %}"), "loop iterations"},
		{"template recursion", writeIn(tmpl, "{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}"), "nested deeper"},
		bomb("repeat", "{{ 'x' * 10000000000 }}"),
		bomb("string doubling", "{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
		bomb("list doubling", "{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"),
		bomb("nested doubling", "{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}"),
		bomb("join", "{% for i in range(64) %}{% set ns.s = (ns.s ~ ns.s) | join(ns.s) %}{% endfor %}"),
		bomb("indent", "{{ ('a\\n' * 1000000) | indent(1000000) }}"),
		bomb("replace", "{% for i in range(64) %}{% set ns.s = ns.s | replace('x', 'xxx') %}{% endfor %}"),
		bomb("strftime", "{{ strftime_now('%B' * 8000000) }}"),
		bomb("self append", "{% set _ = ns.l.append(ns.l) %}{{ ns.l }}"),
	}
	return cases
}

// TestMalformedModelFolders: every damaged folder ends in a clear error,
// within bounded time and memory, without a panic.
func TestMalformedModelFolders(t *testing.T) {
	cases := folderCases()
	var slowest time.Duration
	var slowestName string
	var peak, maxAlloc uint64
	var maxAllocName string
	errs, panics := 0, 0
	for _, c := range cases {
		dir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "m"))
		if err != nil {
			t.Fatal(err)
		}
		c.damage(t, dir)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		err, panicked := tryFolder(dir)
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		if d > slowest {
			slowest, slowestName = d, c.name
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > maxAlloc {
			maxAlloc, maxAllocName = a, c.name
		}
		peak = max(peak, after.Sys)
		switch {
		case panicked:
			panics++
			t.Errorf("%s: panic: %v", c.name, err)
		case err == nil:
			t.Errorf("%s: no error", c.name)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		default:
			errs++
		}
	}
	t.Logf("%d damaged model folders: %d clear errors, %d panics; slowest %v (%s); most allocated %d MB (%s); Go memory peak %d MB",
		len(cases), errs, panics, slowest.Round(time.Millisecond), slowestName, maxAlloc>>20, maxAllocName, peak>>20)
}

// tryFolder loads dir, renders a prompt and generates a few tokens.
func tryFolder(dir string) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("%v", r), true
		}
	}()
	e, err := Load(dir, "")
	if err != nil {
		return err, false
	}
	if err := e.UseDevice(cputest.Open(), false, nil, nil); err != nil {
		return err, false
	}
	defer e.Close()
	prompt, err := e.Prompt([]chat.Message{chat.NewMessage("user", "hello")}, chat.Options{})
	if err != nil {
		return err, false
	}
	_, err = e.Generate(Request{Prompt: prompt, MaxTokens: 4})
	return err, false
}
