package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gotune/assets"
)

// Issue 13.9: every way of asking for help prints usage with the flags on
// stdout and exits 0; never the flag package's bare "Usage of X:".
func TestHelpEverywhere(t *testing.T) {
	type want struct {
		args  []string
		shows []string // text the usage must contain
	}
	cases := []want{
		{nil, []string{"usage: gotune <command>", "generate", "export"}},
		{[]string{"-h"}, []string{"usage: gotune <command>"}},
		{[]string{"--help"}, []string{"usage: gotune <command>"}},
		{[]string{"help"}, []string{"usage: gotune <command>"}},
		{[]string{"help", "export"}, []string{"usage: gotune export", "-gguf-type"}},
		{[]string{"generate", "--help"}, []string{"usage: gotune generate", "-max-new-tokens", "-raw", "-temperature", "-top-p", "-seed"}},
		{[]string{"generate", "my-model", "-h"}, []string{"usage: gotune generate"}},
		{[]string{"train", "-h"}, []string{"usage: gotune train", "learning_rate", "lora_rank"}},
		{[]string{"train", "my.yaml", "--help"}, []string{"usage: gotune train"}},
		{[]string{"data", "-h"}, []string{"usage: gotune data", "--json", "--samples"}},
		{[]string{"data", "inspect", "-h"}, []string{"usage: gotune data", "--json", "--samples"}},
		{[]string{"data", "prepare", "my.yaml", "--help"}, []string{"usage: gotune data"}},
		{[]string{"eval", "-h"}, []string{"usage: gotune eval", "--adapter", "--json"}},
		{[]string{"export", "-h"}, []string{"usage: gotune export", "-force", "-modelfile", "-quantization-bit"}},
		{[]string{"chat", "-h"}, []string{"usage: gotune chat", "-adapter", "-max-new-tokens"}},
		{[]string{"serve", "--help"}, []string{"usage: gotune serve", "-port", "-api-key"}},
		{[]string{"plan", "-h"}, []string{"usage: gotune plan", "-lora-rank", "-ram"}},
		{[]string{"bench", "-h"}, []string{"usage: gotune bench", "-train", "-peer"}},
		{[]string{"parity", "-h"}, []string{"usage: gotune parity"}},
		{[]string{"quickstart", "-h"}, []string{"usage: gotune quickstart", "-output-dir"}},
		{[]string{"ui", "-h"}, []string{"usage: gotune ui", "-root", "-token"}},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		if len(c.args) > 1 && !strings.HasPrefix(c.args[0], "-") && c.args[0] != "help" {
			covered[c.args[0]] = true
		}
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(c.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			out := stdout.String()
			for _, s := range c.shows {
				if !strings.Contains(out, s) {
					t.Errorf("usage lacks %q:\n%s", s, out)
				}
			}
			if strings.Contains(out+stderr.String(), "Usage of") {
				t.Errorf("bare flag-package usage:\n%s", out)
			}
			if stderr.Len() > 0 {
				t.Errorf("help wrote to stderr: %s", stderr.String())
			}
		})
	}
	for name := range commands() {
		if !covered[name] {
			t.Errorf("no help case for command %q", name)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "gotune ") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, stdout.String(), stderr.String())
		}
	}
}

func TestConfigArgs(t *testing.T) {
	cases := []struct {
		args      []string
		path      string
		overrides []string
		err       string
	}{
		{[]string{"a.yaml"}, "a.yaml", nil, ""},
		{[]string{"a.yaml", "--learning_rate", "1e-4"}, "a.yaml", []string{"--learning_rate", "1e-4"}, ""},
		{[]string{"--learning_rate", "1e-4", "a.yaml"}, "a.yaml", []string{"--learning_rate", "1e-4"}, ""},
		{[]string{"--output_dir", "out", "a.yaml", "lora_rank=4"}, "a.yaml", []string{"--output_dir", "out", "lora_rank=4"}, ""},
		// A boolean key takes the next argument only when it is a boolean word.
		{[]string{"--do_train", "a.yaml"}, "a.yaml", []string{"--do_train"}, ""},
		{[]string{"--do_train", "false", "a.yaml"}, "a.yaml", []string{"--do_train", "false"}, ""},
		{[]string{"--lr=1", "--", "a.yaml"}, "a.yaml", []string{"--lr=1"}, ""},
		{[]string{"a.yaml", "b.yaml"}, "", nil, `unexpected argument "b.yaml"`},
		{[]string{"--seed", "1"}, "", []string{"--seed", "1"}, ""},
	}
	for _, c := range cases {
		path, over, err := configArgs(c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || path != c.path || !reflect.DeepEqual(over, c.overrides) {
			t.Errorf("%q: got %q %q %v, want %q %q", c.args, path, over, err, c.path, c.overrides)
		}
	}
}

// Issue 13.4: positional arguments and flags in any order, for every
// subcommand, or an error; never silently ignored.
func TestArgumentsInAnyOrder(t *testing.T) {
	root := t.TempDir()
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(root, "model"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir, err := assets.DataDir(filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "cfg.yaml")
	yaml := strings.Replace(string(assets.QuickstartConfig()), "output_dir: runs/quickstart", "output_dir: "+filepath.Join(root, "out"), 1) +
		"\nmodel_name_or_path: " + modelDir + "\ndataset_dir: " + dataDir + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	exec := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		// Progress meters draw on a terminal only (issue 13.8): these
		// buffers are pipes.
		if strings.Contains(stderr.String(), "\r") {
			t.Errorf("%q drew progress on a pipe: %q", args, stderr.String())
		}
		return code, stdout.String(), stderr.String()
	}
	summary := regexp.MustCompile(`\[(\d+) prompt tokens, (\d+) generated, .*model (.*)\]`)
	generate := func(args ...string) (prompt string, generated int, model string) {
		t.Helper()
		code, _, stderr := exec(append([]string{"generate"}, args...)...)
		if code != 0 {
			t.Fatalf("generate %q: exit %d: %s", args, code, stderr)
		}
		m := summary.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("generate %q: no summary in %q", args, stderr)
		}
		n, _ := strconv.Atoi(m[2])
		return m[1], n, m[3]
	}

	t.Run("generate", func(t *testing.T) {
		// The positional model and every flag after it are used.
		_, gen, model := generate(modelDir, "--raw", "--prompt", "hi", "--max-new-tokens", "2")
		if model != modelDir || gen > 2 {
			t.Errorf("positional model first: model %s, %d generated", model, gen)
		}
		// A positional prompt after --model, and the flag after it.
		p1, gen, _ := generate("--model", modelDir, "--raw", "Hello there, how are you", "--max-new-tokens", "3")
		p2, _, _ := generate("--model", modelDir, "--raw", "--prompt", "Hello there, how are you", "--max-new-tokens", "3")
		if p1 != p2 || gen > 3 {
			t.Errorf("positional prompt: %s prompt tokens (--prompt: %s), %d generated", p1, p2, gen)
		}
		// MODEL PROMPT, flags last.
		p3, _, model := generate(modelDir, "Hello there, how are you", "--raw", "--max-new-tokens", "1")
		if p3 != p1 || model != modelDir {
			t.Errorf("MODEL PROMPT: %s prompt tokens, model %s", p3, model)
		}
		for _, bad := range [][]string{
			{modelDir, "a", "b"},
			{"--model", modelDir, "--prompt", "a", "b"},
		} {
			if code, _, stderr := exec(append([]string{"generate"}, bad...)...); code == 0 || !strings.Contains(stderr, "b") {
				t.Errorf("generate %q: exit %d, stderr %s", bad, code, stderr)
			}
		}
	})

	t.Run("data inspect", func(t *testing.T) {
		_, all, _ := exec("data", "inspect", cfg, "--json", "--samples", "0")
		orders := [][]string{
			{"data", "inspect", cfg, "--json", "--max_samples", "2", "--samples", "0"},
			{"data", "inspect", "--json", "--max_samples", "2", cfg, "--samples=0"},
			{"data", "inspect", "--samples", "0", "max_samples=2", "--json", cfg},
		}
		var first string
		for i, args := range orders {
			code, out, stderr := exec(args...)
			if code != 0 {
				t.Fatalf("%q: exit %d: %s", args, code, stderr)
			}
			if i == 0 {
				first = out
			} else if out != first {
				t.Errorf("%q gives another report than %q", args, orders[0])
			}
		}
		if first == all {
			t.Error("--max_samples 2 changed nothing: the override was ignored")
		}
		if code, _, stderr := exec("data", "inspect", cfg, cfg+".other"); code == 0 || !strings.Contains(stderr, "unexpected argument") {
			t.Errorf("two config files: exit %d, %s", code, stderr)
		}
	})

	t.Run("eval", func(t *testing.T) {
		a, b := []string{"eval", cfg, "--json", "--max_samples", "2"}, []string{"eval", "--max_samples", "2", "--json", cfg}
		ca, outA, errA := exec(a...)
		cb, outB, errB := exec(b...)
		if ca != 0 || cb != 0 || outA != outB || !strings.HasPrefix(outA, "{") {
			t.Errorf("eval in two orders: exit %d/%d\n%s%s\n%s%s", ca, cb, outA, errA, outB, errB)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"bench", "extra", "--steps", "1"},
			{"plan", modelDir, "other", "--samples", "10"},
			{"export", modelDir, "--model", filepath.Join(root, "elsewhere"), "--out", filepath.Join(root, "x")},
			{"train", cfg, "other.yaml"},
			{"eval", cfg, "other.yaml"},
			{"quickstart", "stray", "--output-dir", filepath.Join(root, "qs")},
		} {
			if code, _, stderr := exec(args...); code == 0 || stderr == "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "qs")); err == nil {
			t.Error("quickstart ran despite a stray argument")
		}
	})
}
