package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gotune/assets"
	"gotune/compute/cpu/cputest"
	"gotune/config"
	"gotune/plot"
	"gotune/runlog"
	"gotune/tboard"
	"gotune/train"
)

// childEnv marks the test binary run as a training child: the server
// starts `gotune train ...`, and in tests this binary plays gotune.
const childEnv = "GOTUNE_UI_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childTrain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// childTrain does what `gotune train CONFIG key=value...` does for local
// model folders.
func childTrain(args []string) int {
	if len(args) < 2 || args[0] != "train" {
		fmt.Fprintln(os.Stderr, "test child: want train CONFIG [key=value...]")
		return 2
	}
	cfg, err := config.Open(args[1], args[2:], os.Stderr)
	if err == nil {
		var t *train.Trainer
		if t, err = train.New(cfg, "", os.Stdout, train.Options{Backend: cputest.Open()}); err == nil {
			err = t.Run()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotune train:", err)
		return 1
	}
	return 0
}

type fixture struct {
	t      *testing.T
	srv    *Server
	ts     *httptest.Server
	root   string
	model  string // bundled model, read-only
	data   string // bundled data folder, read-only
	client *http.Client
}

func newFixture(t *testing.T, opt Options) *fixture {
	t.Helper()
	root := t.TempDir()
	bundled := t.TempDir()
	model, err := assets.ModelDir(assets.DefaultModel, filepath.Join(bundled, "model"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := assets.DataDir(filepath.Join(bundled, "data"))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opt.Roots = []string{root}
	opt.ReadOnly = []string{bundled}
	opt.Command = func(args ...string) *exec.Cmd {
		c := exec.Command(exe, args...)
		c.Env = append(os.Environ(), childEnv+"=1")
		return c
	}
	if opt.Backend == nil {
		opt.Backend = cputest.Open
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	f := &fixture{t: t, srv: s, ts: ts, root: s.Roots()[0], model: model, data: data, client: ts.Client()}
	t.Cleanup(f.stopAll)
	return f
}

// stopAll ends runs a failed test left training.
func (f *fixture) stopAll() {
	for _, d := range f.srv.runDirs() {
		if f.srv.jobs.running(d) != nil {
			f.srv.jobs.stop(d)
		}
	}
}

// do sends a request as the page does (CSRF header, JSON body).
func (f *fixture) do(method, path string, body any) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.ts.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != "GET" {
		req.Header.Set(csrfHeader, f.srv.CSRFToken())
	}
	return f.send(req)
}

func (f *fixture) send(req *http.Request) (int, []byte) {
	f.t.Helper()
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) settings(out string, extra map[string]any) Settings {
	s := Settings{
		"model_name_or_path": f.model, "stage": "sft", "finetuning_type": "lora", "lora_target": "all",
		"dataset": "quickstart", "dataset_dir": f.data, "cutoff_len": 128, "per_device_train_batch_size": 4,
		"learning_rate": 0.01, "num_train_epochs": 2, "logging_steps": 1, "save_steps": 10,
		"output_dir": filepath.Join(f.root, "runs", out),
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("want a JSON error message, got %q", b)
	}
	return e.Error
}

func TestMalformedRequestsGet4xxWithMessage(t *testing.T) {
	f := newFixture(t, Options{})
	good := f.settings("x", nil)
	cases := []struct {
		name, method, path string
		body               any
		raw                string // sent instead of body when set
		ctype              string
		status             int
		want               string
	}{
		{"broken JSON", "POST", "/api/inspect", nil, `{"settings":`, "application/json", 400, "request body"},
		{"unknown field", "POST", "/api/config", map[string]any{"settings": good, "bogus": 1}, "", "", 400, "bogus"},
		{"wrong content type", "POST", "/api/config", nil, `{}`, "text/plain", 415, "application/json"},
		{"no settings", "POST", "/api/config", map[string]any{}, "", "", 400, "no settings"},
		{"unknown config key", "POST", "/api/config", map[string]any{"settings": map[string]any{"learning_rat": 1}}, "", "", 400, "learning_rat"},
		{"wrong value type", "POST", "/api/config", map[string]any{"settings": map[string]any{"lora_rank": "many"}}, "", "", 400, "lora_rank"},
		{"inspect without dataset", "POST", "/api/inspect", map[string]any{"settings": map[string]any{"cutoff_len": 8}}, "", "", 400, "dataset"},
		{"relative model path", "POST", "/api/config", map[string]any{"settings": map[string]any{"model_name_or_path": "models/x"}}, "", "", 400, "absolute"},
		{"start without output_dir", "POST", "/api/run/start", map[string]any{"settings": map[string]any{"stage": "sft"}}, "", "", 400, "output_dir"},
		{"stop without dir", "POST", "/api/run/stop", map[string]any{}, "", "", 400, "dir"},
		{"stop a run not training", "POST", "/api/run/stop", map[string]any{"dir": "."}, "", "", 409, "not training"},
		{"resume without config", "POST", "/api/run/resume", map[string]any{"dir": "."}, "", "", 409, "train.yaml"},
		{"log after negative", "GET", "/api/run/log?dir=.&after=-1", nil, "", "", 400, "after"},
		{"run folder missing", "GET", "/api/run?dir=nope", nil, "", "", 404, "no such run folder"},
		{"chart metric", "GET", "/api/chart.svg?metric=accuracy&dir=.", nil, "", "", 400, "accuracy"},
		{"chart without runs", "GET", "/api/chart.svg?metric=loss", nil, "", "", 400, "dir"},
		{"chat without messages", "POST", "/api/chat", map[string]any{"model": f.model}, "", "", 400, "messages"},
		{"chat bad role", "POST", "/api/chat", map[string]any{"model": f.model, "messages": []map[string]string{{"role": "wizard", "content": "x"}, {"role": "user", "content": "hi"}}}, "", "", 400, "wizard"},
		{"chat temperature", "POST", "/api/chat", map[string]any{"model": f.model, "temperature": -1, "messages": []map[string]string{{"role": "user", "content": "hi"}}}, "", "", 400, "temperature"},
		{"export format", "POST", "/api/export", map[string]any{"model": f.model, "out": "e", "format": "onnx"}, "", "", 400, "onnx"},
		{"export gguf type", "POST", "/api/export", map[string]any{"model": f.model, "out": "e", "format": "gguf", "gguf_type": "q3"}, "", "", 400, "gguf_type"},
		{"unknown API", "GET", "/api/nothing", nil, "", "", 404, "no API"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var status int
			var b []byte
			if c.raw != "" {
				req, _ := http.NewRequest(c.method, f.ts.URL+c.path, strings.NewReader(c.raw))
				req.Header.Set("Content-Type", c.ctype)
				req.Header.Set(csrfHeader, f.srv.CSRFToken())
				status, b = f.send(req)
			} else {
				status, b = f.do(c.method, c.path, c.body)
			}
			if status != c.status {
				t.Fatalf("status %d, want %d (%s)", status, c.status, b)
			}
			if msg := errorOf(t, b); !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not mention %q", msg, c.want)
			}
		})
	}
}

func TestPathOutsideRootsRefused(t *testing.T) {
	f := newFixture(t, Options{})
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.jsonl"), []byte(`{"instruction":"a","output":"b"}`+"\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(f.root, "link")); err != nil {
		t.Fatal(err)
	}
	get := []string{
		"/api/files?dir=" + outside,
		"/api/files?dir=" + f.root + "/../",
		"/api/files?dir=" + filepath.Join(f.root, "link"), // a link inside that leads outside
		"/api/run?dir=/",
		"/api/run/log?dir=" + outside,
		"/api/chart.svg?metric=loss&dir=" + outside,
	}
	for _, p := range get {
		if status, b := f.do("GET", p, nil); status != http.StatusForbidden {
			t.Errorf("GET %s: status %d, want 403 (%s)", p, status, b)
		} else if msg := errorOf(t, b); !strings.Contains(msg, "outside") {
			t.Errorf("GET %s: error %q does not say why", p, msg)
		}
	}
	posts := []struct {
		path string
		body any
	}{
		{"/api/inspect", map[string]any{"settings": map[string]any{"dataset": filepath.Join(outside, "secret.jsonl")}}},
		{"/api/inspect", map[string]any{"settings": map[string]any{"dataset": "x", "dataset_dir": outside}}},
		{"/api/run/start", map[string]any{"settings": f.settings("x", map[string]any{"output_dir": filepath.Join(outside, "run")})}},
		{"/api/run/start", map[string]any{"settings": f.settings("x", map[string]any{"output_dir": filepath.Join(f.root, "link", "run")})}},
		// The bundled model may be read, never written.
		{"/api/export", map[string]any{"model": f.model, "out": filepath.Join(f.model, "x"), "format": "hf"}},
		{"/api/chat", map[string]any{"model": outside, "messages": []map[string]string{{"role": "user", "content": "hi"}}}},
	}
	for _, p := range posts {
		if status, b := f.do("POST", p.path, p.body); status != http.StatusForbidden {
			t.Errorf("POST %s %v: status %d, want 403 (%s)", p.path, p.body, status, b)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "run")); err == nil {
		t.Error("a run folder was created outside the roots")
	}
	// Inside, the same listing works and shows what is there.
	os.WriteFile(filepath.Join(f.root, "mine.jsonl"), []byte("{}\n"), 0o644)
	status, b := f.do("GET", "/api/files", nil)
	if status != 200 || !bytes.Contains(b, []byte(`"mine.jsonl"`)) {
		t.Errorf("listing the root: %d %s", status, b)
	}
	if bytes.Contains(b, []byte(`"link"`)) {
		t.Errorf("the listing offers a link that leads outside: %s", b)
	}
}

func TestCSRFAndHostChecks(t *testing.T) {
	f := newFixture(t, Options{})
	bb, _ := json.Marshal(map[string]any{"settings": f.settings("c", nil)})
	body := string(bb)
	post := func(mod func(*http.Request)) (int, []byte) {
		req, _ := http.NewRequest("POST", f.ts.URL+"/api/config", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		mod(req)
		return f.send(req)
	}
	if status, b := post(func(r *http.Request) {}); status != 403 || !strings.Contains(errorOf(t, b), csrfHeader) {
		t.Errorf("no CSRF header: %d %s", status, b)
	}
	if status, b := post(func(r *http.Request) { r.Header.Set(csrfHeader, "guess") }); status != 403 {
		t.Errorf("wrong CSRF token: %d %s", status, b)
	}
	if status, b := post(func(r *http.Request) {
		r.Header.Set(csrfHeader, f.srv.CSRFToken())
		r.Header.Set("Origin", "http://evil.example")
	}); status != 403 || !strings.Contains(errorOf(t, b), "evil.example") {
		t.Errorf("foreign Origin: %d %s", status, b)
	}
	if status, b := post(func(r *http.Request) {
		r.Header.Set(csrfHeader, f.srv.CSRFToken())
		r.Header.Set("Origin", f.ts.URL)
	}); status != 200 {
		t.Errorf("same-origin request with the token: %d %s", status, b)
	}
	// DNS rebinding: a foreign name resolving to loopback.
	req, _ := http.NewRequest("GET", f.ts.URL+"/api/models", nil)
	req.Host = "attacker.example:80"
	if status, _ := f.send(req); status != 403 {
		t.Errorf("foreign Host: %d, want 403", status)
	}
	// The page carries the token the API wants.
	_, page := f.do("GET", "/", nil)
	if !bytes.Contains(page, []byte(`content="`+f.srv.CSRFToken()+`"`)) {
		t.Error("the page does not carry the CSRF token")
	}
}

func TestTokenRequiredOffLoopback(t *testing.T) {
	if err := CheckAddr("0.0.0.0:7860", ""); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("0.0.0.0 without a token: %v", err)
	}
	if err := CheckAddr("[::]:7860", ""); err == nil {
		t.Error(":: without a token was accepted")
	}
	for _, a := range []string{"127.0.0.1:0", "localhost:7860", "[::1]:7860"} {
		if err := CheckAddr(a, ""); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := CheckAddr("0.0.0.0:7860", "s3cret"); err != nil {
		t.Errorf("with a token: %v", err)
	}
	f := newFixture(t, Options{Token: "s3cret"})
	jar := &cookieJar{}
	f.client = &http.Client{Jar: jar}
	if status, _ := f.do("GET", "/api/session", nil); status != 401 {
		t.Errorf("no token: %d, want 401", status)
	}
	if status, _ := f.do("GET", "/api/session?token=wrong", nil); status != 401 {
		t.Errorf("wrong token: %d, want 401", status)
	}
	if status, _ := f.do("GET", "/?token=s3cret", nil); status != 200 {
		t.Errorf("token in the URL: %d", status)
	}
	if status, b := f.do("GET", "/api/session", nil); status != 200 {
		t.Errorf("cookie from the first visit not honoured: %d %s", status, b)
	}
	req, _ := http.NewRequest("GET", f.ts.URL+"/api/session", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	if status, _ := (&fixture{t: t, client: http.DefaultClient}).send(req); status != 200 {
		t.Errorf("bearer token: %d", status)
	}
}

// cookieJar is the smallest jar: one cookie set, sent back to any URL.
type cookieJar struct{ c []*http.Cookie }

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) { j.c = append(j.c, cs...) }
func (j *cookieJar) Cookies(_ *url.URL) []*http.Cookie        { return j.c }

func TestListsModelsDatasetsAndInspects(t *testing.T) {
	f := newFixture(t, Options{})
	_, b := f.do("GET", "/api/models", nil)
	var models []modelEntry
	json.Unmarshal(b, &models)
	if len(models) == 0 || models[0].Path != f.model || models[0].Kind != "model" {
		t.Fatalf("models: %s", b)
	}
	_, b = f.do("GET", "/api/datasets", nil)
	var ds []datasetEntry
	json.Unmarshal(b, &ds)
	found := false
	for _, d := range ds {
		found = found || (d.Kind == "info" && d.Dataset == "quickstart" && d.DatasetDir == f.data)
	}
	if !found {
		t.Fatalf("the bundled dataset_info.json entry is not listed: %s", b)
	}
	status, b := f.do("POST", "/api/inspect", map[string]any{"settings": map[string]any{
		"model_name_or_path": f.model, "dataset": "quickstart", "dataset_dir": f.data, "cutoff_len": 128}, "samples": 2})
	if status != 200 {
		t.Fatalf("inspect: %d %s", status, b)
	}
	var rep struct {
		Unit    string
		Sources []struct{ Records, Kept int }
		Hist    []struct{ Count int } `json:"length_histogram"`
		Render  []struct {
			Segments []struct {
				Text    string
				Trained bool
			}
		} `json:"rendered"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Unit != "tokens" || len(rep.Sources) != 1 || rep.Sources[0].Records != 12 || rep.Sources[0].Kept != 12 {
		t.Errorf("counts: %s", b)
	}
	total := 0
	for _, h := range rep.Hist {
		total += h.Count
	}
	if total != 12 {
		t.Errorf("histogram counts %d samples, want 12", total)
	}
	if len(rep.Render) != 2 {
		t.Fatalf("%d rendered samples, want 2", len(rep.Render))
	}
	var trained, prompt string
	for _, s := range rep.Render[0].Segments {
		if s.Trained {
			trained += s.Text
		} else {
			prompt += s.Text
		}
	}
	if !strings.Contains(prompt, "<|im_start|>user") || !strings.Contains(trained, "<|im_end|>") || strings.Contains(trained, "<|im_start|>user") {
		t.Errorf("trained span wrong: prompt %q trained %q", prompt, trained)
	}
	// The YAML the page shows is the file gotune train reads.
	status, b = f.do("POST", "/api/config", map[string]any{"settings": f.settings("y", nil)})
	var cfgRes struct{ YAML string }
	if json.Unmarshal(b, &cfgRes); status != 200 || !strings.Contains(cfgRes.YAML, "learning_rate: 0.01\n") {
		t.Fatalf("config: %d %s", status, b)
	}
	if _, err := config.Parse([]byte(cfgRes.YAML), "ui.yaml"); err != nil {
		t.Errorf("the YAML does not parse back: %v", err)
	}
}

// waitStatus polls a run until cond holds.
func (f *fixture) waitStatus(dir string, timeout time.Duration, what string, cond func(RunStatus) bool) RunStatus {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	var st RunStatus
	for time.Now().Before(deadline) {
		_, b := f.do("GET", "/api/run?dir="+dir, nil)
		st = RunStatus{}
		json.Unmarshal(b, &st)
		if cond(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("run %s: timed out waiting for %s; last status %+v", dir, what, st)
	return st
}

func TestTrainStopResumeAndTwoWatchers(t *testing.T) {
	f := newFixture(t, Options{})
	// Long enough that it is still training when stopped.
	status, b := f.do("POST", "/api/run/start", map[string]any{"settings": f.settings("long", map[string]any{"num_train_epochs": 2000})})
	if status != 200 {
		t.Fatalf("start: %d %s", status, b)
	}
	dir := filepath.Join(f.root, "runs", "long")
	f.waitStatus(dir, 60*time.Second, "a checkpoint", func(s RunStatus) bool { return s.State == "running" && s.Step >= 12 })
	checkNice(t, dir)
	if status, b := f.do("POST", "/api/run/start", map[string]any{"settings": f.settings("long", map[string]any{"overwrite_output_dir": true})}); status != 409 {
		t.Errorf("second start of a running run: %d %s", status, b)
	}
	// Two pages watching the same run get the same records.
	type logResp struct {
		Count   int
		Records []json.RawMessage
	}
	var w1, w2 logResp
	_, b1 := f.do("GET", "/api/run/log?dir="+dir, nil)
	c2 := &fixture{t: t, srv: f.srv, ts: f.ts, client: &http.Client{}}
	_, b2 := c2.do("GET", "/api/run/log?dir="+dir, nil)
	json.Unmarshal(b1, &w1)
	json.Unmarshal(b2, &w2)
	if w1.Count == 0 || w2.Count < w1.Count {
		t.Fatalf("watchers saw %d and %d records", w1.Count, w2.Count)
	}
	for i := range w1.Records {
		if !bytes.Equal(w1.Records[i], w2.Records[i]) {
			t.Fatalf("record %d differs between watchers: %s vs %s", i, w1.Records[i], w2.Records[i])
		}
	}
	// The second watcher asks only for what it has not seen.
	_, b3 := c2.do("GET", fmt.Sprintf("/api/run/log?dir=%s&after=%d", dir, w1.Count), nil)
	var w3 logResp
	json.Unmarshal(b3, &w3)
	if w3.Count < w1.Count || len(w3.Records) != w3.Count-w1.Count {
		t.Errorf("after=%d: count %d with %d records", w1.Count, w3.Count, len(w3.Records))
	}

	// The server answers promptly while the run keeps the cores busy.
	startReq := time.Now()
	f.do("GET", "/api/runs", nil)
	if d := time.Since(startReq); d > 2*time.Second {
		t.Errorf("GET /api/runs took %v during training", d)
	}

	// A second server over the same folder (gotune ui restarted) sees the
	// run training, and can stop it: the job outlives the server that
	// started it.
	s2, err := New(Options{Roots: []string{f.root}, Backend: cputest.Open})
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.jobs.status(dir, false); st.State != "running" {
		t.Fatalf("a restarted server sees the run as %q", st.State)
	}
	if err := s2.jobs.stop(dir); err != nil {
		t.Fatalf("stop from a restarted server: %v", err)
	}
	st := f.waitStatus(dir, 10*time.Second, "stopped", func(s RunStatus) bool { return s.State == "stopped" })
	if !st.Resumable || st.ETA != nil {
		t.Fatalf("stopped run: %+v", st)
	}
	stoppedAt := st.Step
	if status, b := f.do("POST", "/api/run/resume", map[string]any{"dir": dir}); status != 200 {
		t.Fatalf("resume: %d %s", status, b)
	}
	f.waitStatus(dir, 60*time.Second, "training past the stop", func(s RunStatus) bool { return s.State == "running" && s.Step > stoppedAt })
	out, _ := os.ReadFile(filepath.Join(dir, OutputFile))
	if !bytes.Contains(out, []byte("resume_from_checkpoint=true")) {
		t.Errorf("the resumed child was not started with resume_from_checkpoint: %s", out)
	}
	if status, b := f.do("POST", "/api/run/stop", map[string]any{"dir": dir}); status != 200 {
		t.Fatalf("second stop: %d %s", status, b)
	}
	// Every logged step once, in order: the resumed run dropped what the
	// stopped one logged after its last checkpoint.
	_, b = f.do("GET", "/api/run/log?dir="+dir, nil)
	var all struct{ Records []struct{ Step int } }
	json.Unmarshal(b, &all)
	for i, r := range all.Records {
		if r.Step != i+1 {
			t.Fatalf("record %d has step %d after resume", i, r.Step)
		}
	}
}

func TestFinishedRunChartsYAMLChatExport(t *testing.T) {
	f := newFixture(t, Options{})
	set := f.settings("short", map[string]any{"num_train_epochs": 20})
	if status, b := f.do("POST", "/api/run/start", map[string]any{"settings": set}); status != 200 {
		t.Fatalf("start: %d %s", status, b)
	}
	dir := filepath.Join(f.root, "runs", "short")
	st := f.waitStatus(dir, 90*time.Second, "the end", func(s RunStatus) bool { return s.State == "finished" || s.State == "failed" })
	if st.State != "finished" || st.Step != 60 || st.TotalSteps != 60 || !st.Adapter {
		t.Fatalf("finished run: %+v\n%s", st, tail(filepath.Join(dir, OutputFile), 2000))
	}
	// train wrote the loss chart into the run folder.
	svg, err := os.ReadFile(filepath.Join(dir, "training_loss.svg"))
	if err != nil || !bytes.Contains(svg, []byte("<polyline")) {
		t.Errorf("training_loss.svg: %v", err)
	}
	// The listed runs include it, and its YAML comes back as written.
	_, b := f.do("GET", "/api/runs", nil)
	if !bytes.Contains(b, []byte(`"dir":"`+dir+`"`)) {
		t.Errorf("runs: %s", b)
	}
	req, _ := http.NewRequest("GET", f.ts.URL+"/api/run/yaml?download=1&dir="+dir, nil)
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	yml, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	onDisk, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if !bytes.Equal(yml, onDisk) || !strings.Contains(resp.Header.Get("Content-Disposition"), "short.yaml") {
		t.Errorf("yaml download: %q (%s)", yml, resp.Header.Get("Content-Disposition"))
	}
	// Overlaid chart of two runs: one series each.
	status, b := f.do("GET", "/api/chart.svg?metric=loss&dir="+dir+"&dir="+dir, nil)
	if status != 200 || bytes.Count(b, []byte(`class="series"`)) != 2 || bytes.Count(b, []byte("<polyline")) != 2 {
		t.Errorf("chart: %d %s", status, b)
	}

	// Base and fine-tune scored on the data it was trained on: the
	// fine-tune's loss is far lower.
	status, b = f.do("POST", "/api/eval", map[string]any{"settings": map[string]any{"model_name_or_path": f.model, "cutoff_len": 128},
		"datasets": []map[string]any{{"dataset": "quickstart", "dataset_dir": f.data}}, "adapter": dir})
	var ev []struct {
		Dataset       string
		Base, Adapter []train.EvalResult
	}
	if json.Unmarshal(b, &ev); status != 200 || len(ev) != 1 || len(ev[0].Base) == 0 || len(ev[0].Adapter) != len(ev[0].Base) {
		t.Fatalf("eval: %d %s", status, b)
	}
	if base, ft := ev[0].Base[0], ev[0].Adapter[0]; base.Samples != 12 || !(ft.Loss < base.Loss/2) {
		t.Errorf("eval: base %+v, fine-tune %+v", base, ft)
	}
	if status, b := f.do("POST", "/api/eval", map[string]any{"settings": map[string]any{"model_name_or_path": f.model}, "datasets": []any{}}); status != 400 {
		t.Errorf("eval without datasets: %d %s", status, b)
	}

	// Chat with the adapter, streamed.
	status, b = f.do("POST", "/api/chat", map[string]any{"model": f.model, "adapter": dir, "max_new_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": "What do bees make?"}}})
	if status != 200 {
		t.Fatalf("chat: %d %s", status, b)
	}
	var text string
	var done bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	lines := 0
	for sc.Scan() {
		lines++
		var m struct {
			Text  string
			Done  bool
			Error string
		}
		json.Unmarshal(sc.Bytes(), &m)
		if m.Error != "" {
			t.Fatalf("chat error: %s", m.Error)
		}
		text += m.Text
		done = done || m.Done
	}
	if !done || text == "" || lines < 3 {
		t.Errorf("chat stream: %d lines, done %v, text %q", lines, done, text)
	}

	// Export GGUF with a Modelfile.
	status, b = f.do("POST", "/api/export", map[string]any{"model": f.model, "adapter": dir, "out": "exports/g", "format": "gguf", "gguf_type": "q8_0", "modelfile": true})
	if status != 200 || !bytes.Contains(b, []byte(`"result"`)) {
		t.Fatalf("export: %d %s", status, b)
	}
	for _, name := range []string{"model.gguf", "Modelfile"} {
		if _, err := os.Stat(filepath.Join(f.root, "exports", "g", name)); err != nil {
			t.Errorf("export: %v", err)
		}
	}
}

func TestCurateSavesJSONLAndDatasetInfo(t *testing.T) {
	f := newFixture(t, Options{})
	src := filepath.Join(f.data, "quickstart.json")
	status, b := f.do("GET", "/api/records?limit=5&offset=2&path="+src, nil)
	var page struct {
		Total, Offset int
		Records       []json.RawMessage
	}
	if json.Unmarshal(b, &page); status != 200 || page.Total != 12 || len(page.Records) != 5 {
		t.Fatalf("records: %d %s", status, b)
	}
	_, b = f.do("GET", "/api/records?path="+src, nil)
	json.Unmarshal(b, &page)
	// Reject the first, edit the second, add one.
	recs := page.Records[1:]
	recs[0] = json.RawMessage(`{"instruction": "What is 2+2?", "input": "", "output": "4"}`)
	recs = append(recs, json.RawMessage(`{"instruction":"Say hi","output":"hi"}`))
	save := map[string]any{"dir": f.root, "name": "curated", "records": recs}
	status, b = f.do("POST", "/api/records/save", save)
	if status != 200 {
		t.Fatalf("save: %d %s", status, b)
	}
	lines, _ := os.ReadFile(filepath.Join(f.root, "curated.jsonl"))
	if n := bytes.Count(lines, []byte("\n")); n != 12 || !bytes.HasPrefix(lines, []byte(`{"instruction":"What is 2+2?","input":"","output":"4"}`+"\n")) {
		t.Errorf("curated.jsonl (%d lines):\n%s", n, lines)
	}
	info, _ := os.ReadFile(filepath.Join(f.root, "dataset_info.json"))
	if !bytes.Contains(info, []byte(`"file_name": "curated.jsonl"`)) {
		t.Errorf("dataset_info.json: %s", info)
	}
	// The saved entry is a dataset the data package reads by name.
	status, b = f.do("POST", "/api/inspect", map[string]any{"settings": map[string]any{"dataset": "curated", "dataset_dir": f.root}})
	var rep struct{ Sources []struct{ Records, Bad int } }
	if json.Unmarshal(b, &rep); status != 200 || len(rep.Sources) != 1 || rep.Sources[0].Records != 12 || rep.Sources[0].Bad != 0 {
		t.Errorf("inspect curated: %d %s", status, b)
	}
	// Mixed by ratio with the bundled file, as the Train tab sends a mix of
	// datasets from different folders: their files.
	status, b = f.do("POST", "/api/inspect", map[string]any{"settings": map[string]any{
		"dataset": []string{src, filepath.Join(f.root, "curated.jsonl")}, "mix_strategy": "interleave_under", "interleave_probs": []float64{0.5, 0.5}}})
	var mixed struct {
		Sources []struct{ Name string }
		Train   int
	}
	if json.Unmarshal(b, &mixed); status != 200 || len(mixed.Sources) != 2 || mixed.Train == 0 {
		t.Errorf("mixed inspect: %d %s", status, b)
	}
	// Saving again under the same name replaces the file, keeps one entry.
	if status, b := f.do("POST", "/api/records/save", map[string]any{"dir": f.root, "name": "curated", "records": recs[:3]}); status != 200 {
		t.Errorf("save again: %d %s", status, b)
	}
	bad := []struct {
		body   map[string]any
		status int
		want   string
	}{
		{map[string]any{"dir": f.root, "name": "../x", "records": recs}, 400, "name"},
		{map[string]any{"dir": f.root, "name": "x", "file_name": "../x.jsonl", "records": recs}, 400, "file_name"},
		{map[string]any{"dir": f.root, "name": "x", "records": []any{}}, 400, "nothing"},
		{map[string]any{"dir": f.root, "name": "x", "records": []any{"text"}}, 400, "records[0]"},
		{map[string]any{"dir": f.root, "name": "x", "records": []any{map[string]any{"foo": 1}}}, 400, "format"},
		{map[string]any{"dir": f.root, "name": "x", "records": []any{map[string]any{"instruction": "a", "output": "b"},
			map[string]any{"messages": []any{map[string]any{"role": "user", "content": "a"}}}}}, 400, "one format"},
		{map[string]any{"dir": f.root, "name": "curated", "file_name": "other.jsonl", "records": recs}, 409, "already has an entry"},
		{map[string]any{"dir": f.data, "name": "x", "records": recs}, 403, "outside"},
	}
	for _, c := range bad {
		status, b := f.do("POST", "/api/records/save", c.body)
		if status != c.status || !strings.Contains(errorOf(t, b), c.want) {
			t.Errorf("save %v: %d %s, want %d mentioning %q", c.body["name"], status, b, c.status, c.want)
		}
	}
	if status, b := f.do("GET", "/api/records?path="+filepath.Join(f.root, "missing.jsonl"), nil); status != 404 {
		t.Errorf("missing file: %d %s", status, b)
	}
}

// checkNice asserts every thread of the run's training child runs at the
// jobs' niceness, below the server.
func checkNice(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		t.Fatalf("no pid file: %v", err)
	}
	pid := strings.TrimSpace(string(b))
	var bad []string
	for try := 0; try < 30; try++ {
		bad = bad[:0]
		tasks, _ := filepath.Glob("/proc/" + pid + "/task/*/stat")
		if len(tasks) == 0 {
			t.Skip("no /proc task list here")
		}
		for _, p := range tasks {
			st, err := os.ReadFile(p)
			if err != nil {
				continue // the thread ended
			}
			// Fields after "(comm)": state is the first, nice the 17th.
			fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
			if len(fields) > 16 && fields[16] != fmt.Sprint(jobNice) {
				bad = append(bad, p+": nice "+fields[16])
			}
		}
		if len(bad) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("training threads not reniced: %v", bad)
}

func TestPlan(t *testing.T) {
	f := newFixture(t, Options{})
	status, b := f.do("POST", "/api/plan", map[string]any{"model": f.model, "dataset_file": filepath.Join(f.data, "quickstart.json"), "batch": 4, "seq": 128, "lora_rank": 8})
	var p struct {
		Samples     int64
		Recommended string
		Methods     []struct{ Method string }
		Reasons     []string
	}
	if json.Unmarshal(b, &p); status != 200 || p.Samples != 12 || p.Recommended == "" || len(p.Methods) < 5 || len(p.Reasons) == 0 {
		t.Errorf("plan: %d %s", status, b)
	}
	if status, b := f.do("POST", "/api/plan", map[string]any{"model": f.model, "batch": 0, "seq": 128}); status != 400 {
		t.Errorf("batch 0: %d %s", status, b)
	}
}

// TestTensorBoardEventsMatchLog: report_to: tensorboard writes an event
// file holding every scalar of trainer_log.jsonl, step for step.
func TestTensorBoardEventsMatchLog(t *testing.T) {
	f := newFixture(t, Options{})
	set := f.settings("tb", map[string]any{"num_train_epochs": 3, "report_to": "tensorboard", "val_size": 0.25, "eval_strategy": "steps", "eval_steps": 3})
	if status, b := f.do("POST", "/api/run/start", map[string]any{"settings": set}); status != 200 {
		t.Fatalf("start: %d %s", status, b)
	}
	dir := filepath.Join(f.root, "runs", "tb")
	st := f.waitStatus(dir, 90*time.Second, "the end", func(s RunStatus) bool { return s.State == "finished" || s.State == "failed" })
	if st.State != "finished" {
		t.Fatalf("run: %+v\n%s", st, tail(filepath.Join(dir, OutputFile), 2000))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if len(files) != 1 {
		t.Fatalf("event files: %v", files)
	}
	fh, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	evs, err := tboard.Read(fh)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float32{}
	for _, e := range evs {
		for _, v := range e.Values {
			got[fmt.Sprintf("%d %s", e.Step, v.Tag)] = v.Value
		}
	}
	recs, err := plot.ReadLog(filepath.Join(dir, "trainer_log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n, evals := 0, 0
	for _, r := range recs {
		for _, key := range []string{"loss", "lr", "grad_norm", "epoch", "tokens_per_s", "mem_rss_mb", "mem_peak_mb", "eval_loss"} {
			v, _ := r.Value(key)
			if math.IsNaN(v) {
				continue
			}
			k := fmt.Sprintf("%d %s", r.Step, tboard.Tag(key))
			g, ok := got[k]
			if !ok {
				t.Errorf("%s missing from the event file", k)
				continue
			}
			// The log rounds epoch to 4 decimals, tokens/s and memory to
			// one; the event file holds float32.
			slack := 1e-6*math.Abs(v) + 1e-12
			if key == "tokens_per_s" || strings.HasPrefix(key, "mem_") {
				slack += 0.051
			}
			if key == "epoch" {
				slack += 0.000051
			}
			if math.Abs(float64(g)-v) > slack {
				t.Errorf("%s: event %g, log %g", k, g, v)
			}
			n++
			if key == "eval_loss" {
				evals++
			}
		}
	}
	if n < 5*7 || evals == 0 {
		t.Errorf("compared %d scalars (%d eval losses)", n, evals)
	}
}

func TestModelsFromHubCache(t *testing.T) {
	f := newFixture(t, Options{})
	cache := t.TempDir()
	snap := filepath.Join(cache, "models--Org--Tiny-Model", "snapshots", "0123456789abcdef")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(f.model, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(snap, name), b, 0o644)
	}
	s, err := New(Options{Roots: []string{f.root}, ReadOnly: []string{cache}, Backend: cputest.Open})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var models []modelEntry
	json.NewDecoder(resp.Body).Decode(&models)
	if len(models) != 1 || models[0].Name != "Org/Tiny-Model@01234567" || models[0].Path != snap {
		t.Errorf("models: %+v", models)
	}
}

// TestChatStopsWhenTheClientLeaves: a request closed mid-stream (the page's
// Stop) leaves the engine usable: the next message is answered. (With the
// tiny model's 512-token context the abandoned reply would end within a
// second anyway, so this checks for a hang, not for the cancellation's
// speed.)
func TestChatStopsWhenTheClientLeaves(t *testing.T) {
	f := newFixture(t, Options{})
	body, _ := json.Marshal(map[string]any{"model": f.model, "max_new_tokens": 8192, "temperature": 1, "seed": 1,
		"messages": []map[string]string{{"role": "user", "content": "Tell me everything."}}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.ts.URL+"/api/chat", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(csrfHeader, f.srv.CSRFToken())
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"text"`) {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	status, b := f.do("POST", "/api/chat", map[string]any{"model": f.model, "max_new_tokens": 4,
		"messages": []map[string]string{{"role": "user", "content": "Hi"}}})
	if status != 200 || !bytes.Contains(b, []byte(`"done":true`)) {
		t.Fatalf("next chat: %d %s", status, b)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the next message waited %v for the abandoned one", d)
	}
}

// A preference run's log offers its reward charts: the run's status lists
// the keys it holds, and the chart endpoint draws them; an SFT run's
// status lists none of them.
func TestPreferenceRewardCharts(t *testing.T) {
	f := newFixture(t, Options{})
	dpo := filepath.Join(f.root, "dpo-run")
	sft := filepath.Join(f.root, "sft-run")
	for _, d := range []string{dpo, sft} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dpo, runlog.FileName), []byte(`{"step":1,"loss":0.69,"rewards/chosen":0.01,"rewards/rejected":-0.01,"rewards/accuracies":0.5,"rewards/margins":0.02}
{"step":2,"loss":0.6,"rewards/chosen":0.2,"rewards/rejected":-0.1,"rewards/accuracies":0.75,"rewards/margins":0.3}
`), 0o644)
	os.WriteFile(filepath.Join(sft, runlog.FileName), []byte(`{"step":1,"loss":2}`+"\n"), 0o644)
	charts := func(dir string) []string {
		status, b := f.do("GET", "/api/run?dir="+url.QueryEscape(dir), nil)
		var st RunStatus
		if status != 200 || json.Unmarshal(b, &st) != nil {
			t.Fatalf("status of %s: %d %s", dir, status, b)
		}
		return st.Charts
	}
	if got, want := charts(dpo), []string{"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}; !slices.Equal(got, want) {
		t.Errorf("dpo run charts %v, want %v", got, want)
	}
	if got := charts(sft); !slices.Equal(got, []string{"loss"}) {
		t.Errorf("sft run charts %v", got)
	}
	status, b := f.do("GET", "/api/chart.svg?metric="+url.QueryEscape("rewards/accuracies")+"&dir="+url.QueryEscape(dpo), nil)
	if status != 200 || !bytes.Contains(b, []byte("Reward accuracy")) || bytes.Count(b, []byte("<polyline")) != 1 {
		t.Errorf("accuracy chart: %d %s", status, b)
	}
}
