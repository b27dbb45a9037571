package ckpt

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFiles(files map[string]string) func(string) error {
	return func(dir string) error {
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, body := range []string{"first", "second, longer content", ""} {
		if err := WriteFileAtomic(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, p); got != body {
			t.Fatalf("content %q, want %q", got, body)
		}
	}
	info, _ := os.Stat(p)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("perm %v, want 0600", info.Mode().Perm())
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"state.json"}) {
		t.Errorf("directory holds %v; temporary files left behind", names)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestReadJSONErrors(t *testing.T) {
	type T struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	tests := []struct {
		name, body, want string
	}{
		{"ok", `{"a": 1, "b": "x"}`, ""},
		{"syntax", "{\n\"a\": 1,\n\"b\": }", "line 3"},
		{"type", "{\n\"a\": \"one\"}", `line 2: field "a": expected int`},
		{"unknown", `{"c": 1}`, `unknown field "c"`},
		{"trailing", `{"a": 1} {"a": 2}`, "unexpected data"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".json")
			os.WriteFile(p, []byte(tt.body), 0o644)
			var v T
			err := ReadJSON(p, &v)
			if tt.want == "" {
				if err != nil || v.A != 1 || v.B != "x" {
					t.Fatalf("got %+v, %v", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v; want it to name %s and contain %q", err, p, tt.want)
			}
		})
	}
}

func TestWriteDir(t *testing.T) {
	parent := t.TempDir()
	if err := WriteDir(parent, "checkpoint-1", writeFiles(map[string]string{"a.bin": "one", "sub/b.txt": "bee"})); err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(parent, "checkpoint-1")
	if err := Verify(ck); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(ck, "sub/b.txt")); got != "bee" {
		t.Fatalf("sub/b.txt = %q", got)
	}

	// Replacing keeps exactly the new content.
	if err := WriteDir(parent, "checkpoint-1", writeFiles(map[string]string{"a.bin": "uno"})); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(ck, "a.bin")); got != "uno" {
		t.Fatalf("after replace a.bin = %q", got)
	}
	if _, err := os.Stat(filepath.Join(ck, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Error("replaced checkpoint still has files of the old one")
	}

	// A failing writer leaves the previous version and no temporary directory.
	boom := errors.New("disk full")
	err := WriteDir(parent, "checkpoint-1", func(dir string) error {
		writeFiles(map[string]string{"a.bin": "partial"})(dir)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want it to wrap %v", err, boom)
	}
	if got := readFile(t, filepath.Join(ck, "a.bin")); got != "uno" {
		t.Fatalf("after failed write a.bin = %q, want the previous %q", got, "uno")
	}
	if names := entries(t, parent); !slices.Equal(names, []string{"checkpoint-1"}) {
		t.Errorf("parent holds %v after failed write", names)
	}

	for _, bad := range []string{"", ".hidden", "a/b", ".."} {
		if err := WriteDir(parent, bad, writeFiles(nil)); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

func TestVerifyDetectsDamage(t *testing.T) {
	tests := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"intact", func(string) {}, ""},
		{"truncated", func(d string) { os.WriteFile(filepath.Join(d, "w.bin"), []byte("12"), 0o644) }, "has 2 bytes, manifest says 4"},
		{"file removed", func(d string) { os.Remove(filepath.Join(d, "w.bin")) }, "damaged"},
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, ManifestFile)) }, "incomplete"},
		{"bad manifest", func(d string) { os.WriteFile(filepath.Join(d, ManifestFile), []byte("{"), 0o644) }, ManifestFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			if err := WriteDir(parent, "checkpoint-3", writeFiles(map[string]string{"w.bin": "1234"})); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "checkpoint-3")
			tt.damage(dir)
			err := Verify(dir)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestLatest(t *testing.T) {
	parent := t.TempDir()
	if _, _, err := Latest(parent); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty parent: %v, want ErrNoCheckpoint", err)
	}
	if _, _, err := Latest(filepath.Join(parent, "missing")); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("missing parent: %v, want ErrNoCheckpoint", err)
	}
	for _, step := range []int{5, 20, 100} {
		if err := WriteDir(parent, Name(step), writeFiles(map[string]string{"x": "y"})); err != nil {
			t.Fatal(err)
		}
	}
	// Distractors: an incomplete newer checkpoint, temp dirs, odd names.
	os.Mkdir(filepath.Join(parent, "checkpoint-300"), 0o755)
	os.Mkdir(filepath.Join(parent, ".checkpoint-400.tmp-123"), 0o755)
	os.Mkdir(filepath.Join(parent, "checkpoint-0500x"), 0o755)
	os.Mkdir(filepath.Join(parent, "checkpoint-0600"), 0o755)
	os.WriteFile(filepath.Join(parent, "checkpoint-700"), nil, 0o644)
	path, step, err := Latest(parent)
	if err != nil || step != 100 || path != filepath.Join(parent, "checkpoint-100") {
		t.Fatalf("Latest = %q, %d, %v; want checkpoint-100", path, step, err)
	}
}

func TestRotate(t *testing.T) {
	tests := []struct {
		name    string
		keep    int
		protect []string
		want    []string
	}{
		{"keep 2", 2, nil, []string{"checkpoint-20", "checkpoint-40", "checkpoint-50"}},
		{"keep all", 0, nil, []string{"checkpoint-10", "checkpoint-20", "checkpoint-40", "checkpoint-50"}},
		{"protect best", 1, []string{"checkpoint-10"}, []string{"checkpoint-10", "checkpoint-40", "checkpoint-50"}},
		{"keep more than exist", 9, nil, []string{"checkpoint-10", "checkpoint-20", "checkpoint-40", "checkpoint-50"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			for _, step := range []int{10, 20, 40} {
				if err := WriteDir(parent, Name(step), writeFiles(map[string]string{"x": "y"})); err != nil {
					t.Fatal(err)
				}
			}
			// checkpoint-30 is incomplete and older than the newest: a crash leftover.
			// checkpoint-50 is incomplete and newest: left alone.
			os.Mkdir(filepath.Join(parent, "checkpoint-30"), 0o755)
			os.Mkdir(filepath.Join(parent, "checkpoint-50"), 0o755)
			if err := Rotate(parent, "checkpoint", tt.keep, tt.protect...); err != nil {
				t.Fatal(err)
			}
			got, want := entries(t, parent), tt.want
			if !slices.Equal(got, want) {
				t.Fatalf("after Rotate: %v, want %v", got, want)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	parent := t.TempDir()
	mk := func(name, body string) {
		if err := WriteDir(parent, name, writeFiles(map[string]string{"w": body})); err != nil {
			t.Fatal(err)
		}
	}
	// Crash after moving checkpoint-1 aside but before renaming the new one in.
	mk("checkpoint-1", "old")
	os.Rename(filepath.Join(parent, "checkpoint-1"), filepath.Join(parent, ".checkpoint-1.old-77"))
	os.Mkdir(filepath.Join(parent, ".checkpoint-1.tmp-77"), 0o755)
	// Crash after the rename-in but before removing the old copy.
	mk("checkpoint-2", "new")
	mk("stash", "stale")
	os.Rename(filepath.Join(parent, "stash"), filepath.Join(parent, ".checkpoint-2.old-5"))
	// Crash mid-delete in Rotate, and a temp file from WriteFileAtomic.
	os.Mkdir(filepath.Join(parent, ".checkpoint-0.del-9"), 0o755)
	os.WriteFile(filepath.Join(parent, ".trainer_state.json.tmp-4"), []byte("{"), 0o644)
	os.WriteFile(filepath.Join(parent, ".keep-me"), nil, 0o644)

	if err := Recover(parent); err != nil {
		t.Fatal(err)
	}
	want := []string{".keep-me", "checkpoint-1", "checkpoint-2"}
	if got := entries(t, parent); !slices.Equal(got, want) {
		t.Fatalf("after Recover: %v, want %v", got, want)
	}
	if got := readFile(t, filepath.Join(parent, "checkpoint-1", "w")); got != "old" {
		t.Errorf("checkpoint-1 holds %q, want the restored %q", got, "old")
	}
	if got := readFile(t, filepath.Join(parent, "checkpoint-2", "w")); got != "new" {
		t.Errorf("checkpoint-2 holds %q, want %q", got, "new")
	}
}

const crashEnv = "GOTUNE_CKPT_CRASH_WRITER"

// TestCrashWriterHelper is the child process of TestCrashMidWrite: it starts
// writing a checkpoint, says so, and hangs until it is killed.
func TestCrashWriterHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper process for TestCrashMidWrite")
	}
	parent, name, _ := strings.Cut(spec, "|")
	WriteDir(parent, name, func(dir string) error {
		f, err := os.Create(filepath.Join(dir, "weights.bin"))
		if err != nil {
			return err
		}
		f.Write(make([]byte, 1<<16))
		fmt.Println("WRITING")
		time.Sleep(time.Hour)
		return nil
	})
}

func TestCrashMidWrite(t *testing.T) {
	for _, target := range []string{"checkpoint-2", "checkpoint-1"} { // new name, and replacing
		t.Run(target, func(t *testing.T) {
			parent := t.TempDir()
			if err := WriteDir(parent, "checkpoint-1", writeFiles(map[string]string{"weights.bin": "good"})); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterHelper$", "-test.v")
			cmd.Env = append(os.Environ(), crashEnv+"="+parent+"|"+target)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			started := false
			for sc.Scan() {
				if sc.Text() == "WRITING" {
					started = true
					break
				}
			}
			cmd.Process.Kill() // SIGKILL: no deferred cleanup runs
			cmd.Wait()
			if !started {
				t.Fatal("child never started writing")
			}
			if !slices.ContainsFunc(entries(t, parent), func(s string) bool { return strings.HasPrefix(s, "."+target+".tmp-") }) {
				t.Fatal("no temporary directory: the kill did not land mid-write")
			}
			path, step, err := Latest(parent)
			if err != nil || step != 1 {
				t.Fatalf("Latest after crash = %q, %d, %v; want checkpoint-1", path, step, err)
			}
			if got := readFile(t, filepath.Join(path, "weights.bin")); got != "good" {
				t.Fatalf("previous checkpoint holds %q, want %q", got, "good")
			}
			if err := Recover(parent); err != nil {
				t.Fatal(err)
			}
			if got := entries(t, parent); !slices.Equal(got, []string{"checkpoint-1"}) {
				t.Fatalf("after Recover: %v", got)
			}
		})
	}
}

func TestTrainerStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	best := 0.75
	in := &TrainerState{
		GlobalStep: 12, Epoch: 1.5, MaxSteps: 40,
		Data: DataPosition{Epoch: 1, BatchIndex: 7, ShuffleSeed: 42},
		RNG:  []uint64{0, 1, math.MaxUint64, 0x9E3779B97F4A7C15},
		LogHistory: []LogEntry{
			{Step: 10, Epoch: 1.25, Loss: 2.5, LR: 1e-4, GradNorm: 0.9, EvalLoss: math.NaN()},
			{Step: 12, Epoch: 1.5, Loss: math.NaN(), LR: 9e-5, GradNorm: math.Inf(1), EvalLoss: 1.75},
		},
		BestMetric: &best, BestModelCheckpoint: "checkpoint-10",
	}
	if err := SaveTrainerState(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := LoadTrainerState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.GlobalStep != 12 || out.Epoch != 1.5 || out.MaxSteps != 40 || out.Data != in.Data ||
		!slices.Equal(out.RNG, in.RNG) || *out.BestMetric != best || out.BestModelCheckpoint != "checkpoint-10" {
		t.Fatalf("round trip: %+v", out)
	}
	h := out.LogHistory
	if len(h) != 2 || h[0].Loss != 2.5 || h[0].LR != 1e-4 || !math.IsNaN(h[0].EvalLoss) ||
		!math.IsNaN(h[1].Loss) || !math.IsNaN(h[1].GradNorm) || h[1].EvalLoss != 1.75 {
		t.Fatalf("log history: %+v", h)
	}
	if s := readFile(t, filepath.Join(dir, TrainerStateFile)); !strings.Contains(s, `"loss": null`) || !strings.Contains(s, "18446744073709551615") {
		t.Errorf("file does not store NaN as null or uint64 exactly:\n%s", s)
	}
}

func TestLoadTrainerStateErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"negative step", `{"global_step": -1}`, "global_step is -1"},
		{"history past step", `{"global_step": 2, "log_history": [{"step": 3}]}`, "log_history[0].step is 3"},
		{"wrong type", "{\n\"global_step\": \"x\"}", `line 2: field "global_step"`},
		{"rng not uint", `{"rng_state": [-1]}`, "rng_state"},
		{"bad position", `{"data_position": {"batch_index": -2}}`, "batch_index -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, TrainerStateFile), []byte(tt.body), 0o644)
			_, err := LoadTrainerState(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), TrainerStateFile) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, TrainerStateFile, tt.want)
			}
		})
	}
}
