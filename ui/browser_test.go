package ui

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium-family browser, "" when none is installed.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserEndToEnd drives the page in a real headless Chromium: inspect
// the bundled data, start a run, watch the loss chart grow while it
// trains, stop and resume it, chat with the adapter and export GGUF, each
// step asserted from the DOM. Screenshots go to $GOTUNE_UI_SCREENSHOTS, or
// the test's temporary folder.
func TestBrowserEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser; skipped with -short")
	}
	exe := chromium()
	if exe == "" {
		t.Skip("no chromium on PATH (apt-get install chromium)")
	}
	f := newFixture(t, Options{})
	shots := os.Getenv("GOTUNE_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			var errText string
			chromedp.Run(ctx, chromedp.Text("#error", &errText, chromedp.ByQuery, chromedp.AtLeast(0)))
			t.Fatalf("%s: %v (page error box: %q)", what, err, errText)
		}
	}
	shot := func(name string) {
		t.Helper()
		var png []byte
		// Quality 100 asks for PNG rather than JPEG.
		run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
	}

	// Start the browser first, so that the page's own load is what is timed.
	run("start the browser", chromedp.Navigate("about:blank"))
	// Load the page; it is ready when the pickers are filled.
	start := time.Now()
	run("open the page", chromedp.Navigate(f.ts.URL), chromedp.WaitVisible(`body[data-ready="1"]`, chromedp.ByQuery))
	load := time.Since(start)
	t.Logf("page ready in %v", load)
	if load > 3*time.Second {
		t.Errorf("the page took %v to become ready", load)
	}

	// Data: inspect the bundled dataset through the model's template.
	var table, trained string
	run("inspect",
		chromedp.SetValue("#data-cutoff", "128", chromedp.ByID),
		chromedp.Click("#inspect-btn", chromedp.ByID),
		chromedp.WaitVisible("#samples mark.trained", chromedp.ByQuery),
		chromedp.Text("#inspect-table", &table, chromedp.ByID),
		chromedp.Text("#samples mark.trained", &trained, chromedp.ByQuery),
	)
	if !strings.Contains(table, "quickstart") || !strings.Contains(table, "12") {
		t.Errorf("inspect table: %q", table)
	}
	if !strings.Contains(trained, "<|im_end|>") {
		t.Errorf("trained span %q does not end the answer", trained)
	}
	shot("1-data")

	// Curate: reject one record, add one, save as a new dataset.
	var msg string
	run("curate",
		chromedp.Click("#curate-load", chromedp.ByID),
		chromedp.WaitVisible("#curate-records .record textarea", chromedp.ByQuery),
		chromedp.Click("#curate-records .record:first-child button.reject", chromedp.ByQuery),
		chromedp.SetValue("#curate-kind", "alpaca", chromedp.ByID),
		chromedp.Click("#curate-add", chromedp.ByID),
		chromedp.SetValue("#curate-records .record:last-child textarea", `{"instruction": "What colour is the sky?", "input": "", "output": "Blue."}`, chromedp.ByQuery),
		chromedp.SetValue("#curate-name", "curated", chromedp.ByID),
		chromedp.Click("#curate-save", chromedp.ByID),
		chromedp.Poll(`document.getElementById("curate-msg").textContent.startsWith("saved")`, nil),
		chromedp.Text("#curate-msg", &msg, chromedp.ByID),
	)
	if !strings.Contains(msg, "saved 12 records (alpaca)") {
		t.Errorf("curate: %q", msg)
	}
	curated, _ := os.ReadFile(filepath.Join(f.root, "curated.jsonl"))
	if !strings.Contains(string(curated), "What colour is the sky?") || strings.Contains(string(curated), "What does LoRA train?") {
		t.Errorf("curated.jsonl does not hold the edit:\n%s", curated)
	}
	shot("1b-curate")

	// Train: the YAML, then start.
	var yaml string
	run("configure",
		chromedp.Click(`#tabs button[data-tab="train"]`, chromedp.ByQuery),
		chromedp.SetValue("#train-name", "e2e", chromedp.ByID),
		chromedp.SetValue("#train-epochs", "300", chromedp.ByID),
		chromedp.SetValue("#train-lr", "0.01", chromedp.ByID),
		chromedp.SetValue("#train-batch", "4", chromedp.ByID),
		chromedp.SetValue("#train-cutoff", "128", chromedp.ByID),
		chromedp.SetValue("#train-save", "10", chromedp.ByID),
		chromedp.Click("#yaml-btn", chromedp.ByID),
		chromedp.WaitVisible("#yaml-preview", chromedp.ByID),
		chromedp.Text("#yaml-preview", &yaml, chromedp.ByID),
	)
	if !strings.Contains(yaml, "dataset: curated\n") || !strings.Contains(yaml, "num_train_epochs: 300") || !strings.Contains(yaml, "output_dir: "+filepath.Join(f.root, "runs", "e2e")) {
		t.Errorf("YAML preview:\n%s", yaml)
	}
	var rec string
	run("plan", chromedp.WaitVisible("#plan-recommended", chromedp.ByID), chromedp.Text("#plan-recommended", &rec, chromedp.ByID))
	if !strings.HasPrefix(rec, "Recommended: ") {
		t.Errorf("plan: %q", rec)
	}
	shot("2-train")
	run("start", chromedp.Click("#start-btn", chromedp.ByID), chromedp.WaitVisible(`tr[data-state="running"]`, chromedp.ByQuery))

	// Watch: the loss chart gains points while the run trains.
	points := func() int {
		var n int
		run("count chart points", chromedp.Evaluate(`(() => { const p = document.querySelector("#chart-loss polyline"); return p ? p.getAttribute("points").split(" ").length : 0 })()`, &n))
		return n
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				shot("timeout")
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var first int
	waitFor("the loss chart", 60*time.Second, func() bool { first = points(); return first >= 2 })
	waitFor("the loss chart to grow", 30*time.Second, func() bool { return points() > first })
	shot("3-watch-training")

	// Stop, then resume.
	run("stop", chromedp.Click(`tr[data-state="running"] button.stop`, chromedp.ByQuery), chromedp.WaitVisible(`tr[data-state="stopped"] button.resume`, chromedp.ByQuery))
	shot("4-stopped")
	run("resume", chromedp.Click(`tr[data-state="stopped"] button.resume`, chromedp.ByQuery), chromedp.WaitVisible(`tr[data-state="running"]`, chromedp.ByQuery))
	run("finish", chromedp.WaitVisible(`tr[data-state="finished"]`, chromedp.ByQuery))
	var step, yamlShown string
	run("details",
		chromedp.Text(`tr[data-state="finished"] td.step`, &step, chromedp.ByQuery),
		chromedp.Click(`tr[data-state="finished"] button.details`, chromedp.ByQuery),
		chromedp.WaitVisible("#run-detail", chromedp.ByID),
		chromedp.Poll(`document.getElementById("run-yaml").textContent.includes("num_train_epochs")`, nil),
		chromedp.Text("#run-yaml", &yamlShown, chromedp.ByID),
	)
	if step != "900/900" {
		t.Errorf("finished run shows step %q, want 900/900", step)
	}
	if _, err := os.Stat(filepath.Join(f.root, "runs", "e2e", "training_loss.svg")); err != nil {
		t.Errorf("train did not write its loss chart: %v", err)
	}
	shot("5-finished")

	// Chat with the fine-tune, streamed.
	dir := filepath.Join(f.root, "runs", "e2e")
	var reply string
	run("chat",
		chromedp.Click(`#tabs button[data-tab="chat"]`, chromedp.ByQuery),
		chromedp.WaitReady(`#chat-adapter option[value="`+dir+`"]`, chromedp.ByQuery),
		chromedp.SetValue("#chat-adapter", dir, chromedp.ByID),
		chromedp.SetValue("#chat-input", "What do bees make?", chromedp.ByID),
		chromedp.Click("#chat-send", chromedp.ByID),
		chromedp.WaitVisible(`#chat-log .msg.assistant[data-done="1"]`, chromedp.ByQuery),
		chromedp.Text("#chat-log .msg.assistant", &reply, chromedp.ByQuery),
	)
	if strings.TrimSpace(reply) == "" {
		t.Error("empty chat reply")
	}
	t.Logf("reply: %q", reply)
	shot("6-chat")

	// Compare: base and fine-tune on the curated data, and side by side.
	var evalTable, baseReply, ftReply string
	run("compare",
		chromedp.Click(`#tabs button[data-tab="compare"]`, chromedp.ByQuery),
		chromedp.WaitReady(`#cmp-adapter option[value="`+dir+`"]`, chromedp.ByQuery),
		chromedp.SetValue("#cmp-adapter", dir, chromedp.ByID),
		chromedp.SetValue("#cmp-cutoff", "128", chromedp.ByID),
		chromedp.Evaluate(`(() => { const s = document.getElementById("cmp-datasets"); for (const o of s.options) o.selected = o.value === "curated"; })()`, nil),
		chromedp.Click("#eval-btn", chromedp.ByID),
		chromedp.WaitVisible("#eval-table td.better", chromedp.ByQuery),
		chromedp.Text("#eval-table", &evalTable, chromedp.ByID),
		chromedp.SetValue("#cmp-input", "What do bees make?", chromedp.ByID),
		chromedp.Click("#cmp-send", chromedp.ByID),
		chromedp.WaitVisible(`#cmp-ft[data-done="1"]`, chromedp.ByQuery),
		chromedp.Text("#cmp-base", &baseReply, chromedp.ByID),
		chromedp.Text("#cmp-ft", &ftReply, chromedp.ByID),
	)
	if !strings.Contains(evalTable, "curated") {
		t.Errorf("eval table: %q", evalTable)
	}
	if !strings.Contains(ftReply, "Honey") || baseReply == ftReply {
		t.Errorf("side by side: base %q, fine-tune %q", baseReply, ftReply)
	}
	shot("6b-compare")

	// Export GGUF with a Modelfile.
	var done, files string
	run("export",
		chromedp.Click(`#tabs button[data-tab="export"]`, chromedp.ByQuery),
		chromedp.WaitReady(`#export-adapter option[value="`+dir+`"]`, chromedp.ByQuery),
		chromedp.SetValue("#export-adapter", dir, chromedp.ByID),
		chromedp.SetValue("#export-gguf-type", "q8_0", chromedp.ByID),
		chromedp.SetValue("#export-out", "exports/e2e", chromedp.ByID),
		chromedp.Click("#export-btn", chromedp.ByID),
		chromedp.WaitVisible("#export-done", chromedp.ByID),
		chromedp.Text("#export-done", &done, chromedp.ByID),
		chromedp.Text("#export-result ul", &files, chromedp.ByQuery),
	)
	if !strings.Contains(done, "LORA merged") || !strings.Contains(files, "model.gguf") || !strings.Contains(files, "Modelfile") {
		t.Errorf("export result %q, files %q", done, files)
	}
	if _, err := os.Stat(filepath.Join(f.root, "exports", "e2e", "model.gguf")); err != nil {
		t.Error(err)
	}
	shot("7-export")
}
