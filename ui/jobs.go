package ui

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gotune/ckpt"
	"gotune/plot"
	"gotune/runlog"
)

// Files the UI keeps in a run folder beside what training writes.
const (
	ConfigFile = "train.yaml"       // the config the run was started with
	OutputFile = "train_output.log" // the child's stdout and stderr
	pidFile    = ".gotune-ui.pid"   // the running child, for a later server
)

// jobNice is the niceness of training children: below the server, so the
// page stays responsive while a run keeps every core busy.
const jobNice = 10

type job struct {
	dir     string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	err     error // set when done
	stopped bool  // a stop was asked for
}

type jobs struct {
	s  *Server
	mu sync.Mutex
	m  map[string]*job
}

func newJobs(s *Server) *jobs { return &jobs{s: s, m: map[string]*job{}} }

// running returns the live job of dir, if any.
func (js *jobs) running(dir string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	j := js.m[dir]
	if j == nil {
		return nil
	}
	select {
	case <-j.done:
		return nil
	default:
		return j
	}
}

// start launches `gotune train dir/train.yaml [extra...]` as a child.
func (js *jobs) start(dir string, extra ...string) (*job, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if j := js.m[dir]; j != nil {
		select {
		case <-j.done:
		default:
			return nil, conflict("%s is already training", dir)
		}
	}
	if pid := detachedPID(dir); pid > 0 {
		return nil, conflict("%s is already training (process %d, started by an earlier gotune ui)", dir, pid)
	}
	out, err := os.OpenFile(filepath.Join(dir, OutputFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"train", filepath.Join(dir, ConfigFile)}, extra...)
	cmd := js.s.command(args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: Ctrl-C on the server's terminal does not
	// reach the run, which is meant to outlive the page and the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(out, "=== %s gotune %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting training: %w", err)
	}
	os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	j := &job{dir: dir, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	js.m[dir] = j
	go lowerPriority(cmd.Process.Pid, j.done)
	go func() {
		err := cmd.Wait()
		out.Close()
		os.Remove(filepath.Join(dir, pidFile))
		js.mu.Lock()
		j.err = err
		js.mu.Unlock()
		close(j.done)
		if js.s.log != nil {
			fmt.Fprintf(js.s.log, "training in %s ended: %v\n", dir, err)
		}
	}()
	return j, nil
}

// lowerPriority renices every thread of pid, now and each second until
// done: Linux niceness is per thread, and the Go runtime in the child
// starts threads of its own after exec, so one call at start would miss
// some. Threads created by reniced threads inherit the niceness.
func lowerPriority(pid int, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				syscall.Setpriority(syscall.PRIO_PROCESS, tid, jobNice)
			}
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// stop ends the run in dir: SIGTERM to its process group, SIGKILL after a
// grace period. Checkpoints are written atomically, so the last one stays
// intact whatever the moment.
func (js *jobs) stop(dir string) error {
	j := js.running(dir)
	if j == nil {
		if pid := detachedPID(dir); pid > 0 {
			return syscall.Kill(-pid, syscall.SIGTERM)
		}
		return conflict("%s is not training", dir)
	}
	js.mu.Lock()
	j.stopped = true
	js.mu.Unlock()
	pid := j.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-j.done
	}
	return nil
}

// detachedPID is the live training child an earlier server started in dir
// (0 when none).
func detachedPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("train")) {
		return 0
	}
	return pid
}

// RunStatus is what the page shows of a run.
type RunStatus struct {
	Dir        string   `json:"dir"`
	Name       string   `json:"name"`
	State      string   `json:"state"` // new, running, stopped, finished, failed
	Step       int      `json:"step"`
	TotalSteps int      `json:"total_steps"`
	Progress   float64  `json:"progress"` // 0..1
	Loss       *float64 `json:"loss,omitempty"`
	EvalLoss   *float64 `json:"eval_loss,omitempty"`
	ETA        *float64 `json:"eta_s,omitempty"`
	Elapsed    *float64 `json:"elapsed_s,omitempty"`
	Error      string   `json:"error,omitempty"`
	// Charts are the chart metrics the run's log holds values of (plot's
	// keys): the page adds the stage-specific ones (grpo's reward, the
	// preference rewards) only for runs that have them.
	Charts    []string `json:"charts,omitempty"`
	HasConfig bool     `json:"has_config"`
	Resumable bool     `json:"resumable"`        // has a checkpoint to continue from
	Output    string   `json:"output,omitempty"` // tail of train_output.log
	Adapter   bool     `json:"adapter"`          // holds a finished adapter
}

func fp(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func (js *jobs) status(dir string, withOutput bool) RunStatus {
	st := RunStatus{Dir: dir, Name: js.s.display(dir), State: "new"}
	recs, _ := plot.ReadLog(filepath.Join(dir, runlog.FileName))
	for _, r := range recs {
		if r.TotalSteps > 0 {
			st.TotalSteps = r.TotalSteps
		}
		if !math.IsNaN(r.Loss) {
			st.Step, st.Loss, st.ETA, st.Elapsed = r.Step, fp(r.Loss), fp(r.ETA), fp(r.Elapsed)
		}
		if !math.IsNaN(r.EvalLoss) {
			st.EvalLoss = fp(r.EvalLoss)
		}
	}
	if st.TotalSteps > 0 {
		st.Progress = float64(st.Step) / float64(st.TotalSteps)
	}
	st.Charts = plot.Present(recs)
	st.HasConfig = exists(filepath.Join(dir, ConfigFile))
	_, _, err := ckpt.Latest(dir)
	st.Resumable = err == nil
	st.Adapter = exists(filepath.Join(dir, "adapter_config.json"))
	finished := exists(filepath.Join(dir, ckpt.TrainerStateFile))
	js.mu.Lock()
	j := js.m[dir]
	js.mu.Unlock()
	switch {
	case j != nil && !isDone(j):
		st.State = "running"
	case detachedPID(dir) > 0:
		st.State = "running"
	case finished && (j == nil || j.err == nil):
		st.State = "finished"
		st.Progress = 1
		st.ETA = nil
	case j != nil && (j.stopped || signaled(j.err) == syscall.SIGTERM || signaled(j.err) == syscall.SIGINT):
		// Stopped here, or by another gotune ui or a user's kill.
		st.State = "stopped"
	case j != nil && j.err != nil:
		st.State = "failed"
		st.Error = lastLine(tail(filepath.Join(dir, OutputFile), 4096))
		if signaled(j.err) == syscall.SIGKILL {
			st.Error = "killed (SIGKILL; out of memory?)"
		}
		if st.Error == "" {
			st.Error = j.err.Error()
		}
	case len(recs) > 0:
		st.State = "stopped"
	}
	if st.State != "running" {
		st.ETA = nil
	}
	if withOutput {
		st.Output = tail(filepath.Join(dir, OutputFile), 4096)
	}
	return st
}

func isDone(j *job) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// tail is the end of a file, cut at a line start.
func tail(p string, n int64) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	f.ReadAt(b, off)
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// runDirs finds run folders under the roots (and the folders of jobs this
// server started).
func (s *Server) runDirs() []string {
	seen := map[string]bool{}
	var dirs []string
	for _, r := range s.roots {
		s.walkOne(r, 4, func(dir string) {
			if !seen[dir] && (exists(filepath.Join(dir, runlog.FileName)) || exists(filepath.Join(dir, ConfigFile))) {
				seen[dir] = true
				dirs = append(dirs, dir)
			}
		})
	}
	s.jobs.mu.Lock()
	for d := range s.jobs.m {
		if !seen[d] {
			dirs = append(dirs, d)
		}
	}
	s.jobs.mu.Unlock()
	sort.Strings(dirs)
	return dirs
}

func (s *Server) walkOne(dir string, depth int, fn func(string)) {
	fn(dir)
	if depth == 0 {
		return
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		// Checkpoint folders are part of their run, not runs of their own.
		if de.IsDir() && !strings.HasPrefix(de.Name(), ".") && !strings.HasPrefix(de.Name(), "checkpoint-") {
			s.walkOne(filepath.Join(dir, de.Name()), depth-1, fn)
		}
	}
}

func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request) {
	out := []RunStatus{}
	for _, d := range s.runDirs() {
		out = append(out, s.jobs.status(d, false))
	}
	writeJSON(w, out)
}

// runDir reads and checks the run folder a request names.
func (s *Server) runDir(p string, write bool) (string, error) {
	if p == "" {
		return "", badRequest("dir: name the run folder")
	}
	dir, err := s.resolve(p, write)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", notFound("%s: no such run folder", dir)
	}
	return dir, nil
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	dir, err := s.runDir(r.URL.Query().Get("dir"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, s.jobs.status(dir, true))
}

// handleRunLog returns the run's log records after the given count
// (?after=N skips the first N), so pollers fetch only what is new.
func (s *Server) handleRunLog(w http.ResponseWriter, r *http.Request) {
	dir, err := s.runDir(r.URL.Query().Get("dir"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	after := 0
	if a := r.URL.Query().Get("after"); a != "" {
		if after, err = strconv.Atoi(a); err != nil || after < 0 {
			s.fail(w, r, badRequest("after=%q: want a count ≥ 0", a))
			return
		}
	}
	recs, err := plot.ReadLog(filepath.Join(dir, runlog.FileName))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := struct {
		Count   int           `json:"count"`
		Records []plot.Record `json:"records"`
	}{Count: len(recs), Records: []plot.Record{}}
	if after < len(recs) {
		out.Records = recs[after:]
	}
	writeJSON(w, out)
}

func (s *Server) handleRunYAML(w http.ResponseWriter, r *http.Request) {
	dir, err := s.runDir(r.URL.Query().Get("dir"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		s.fail(w, r, notFound("%s has no %s (it was not started from the UI)", dir, ConfigFile))
		return
	}
	w.Header().Set("Content-Type", "text/yaml; charset=utf-8")
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", filepath.Base(dir)+".yaml"))
	}
	w.Write(b)
}

// handleStart writes the run's config into its folder and starts training.
func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Settings Settings `json:"settings"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	out, _ := req.Settings["output_dir"].(string)
	if out == "" {
		s.fail(w, r, badRequest("settings.output_dir: name the run folder"))
		return
	}
	text, cfg, err := s.renderYAML(req.Settings, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dir, err := s.resolve(cfg.OutputDir, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.jobs.running(dir) != nil || detachedPID(dir) > 0 {
		s.fail(w, r, conflict("%s is already training", dir))
		return
	}
	if exists(filepath.Join(dir, runlog.FileName)) && !cfg.OverwriteOutputDir {
		s.fail(w, r, conflict("%s already holds a run: resume it, pick another name, or set overwrite_output_dir", dir))
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := ckpt.WriteFileAtomic(filepath.Join(dir, ConfigFile), text, 0o644); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.jobs.start(dir); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, s.jobs.status(dir, false))
}

type dirRequest struct {
	Dir string `json:"dir"`
}

func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	var req dirRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	dir, err := s.runDir(req.Dir, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.jobs.stop(dir); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, s.jobs.status(dir, false))
}

// handleResume continues a stopped run from its latest checkpoint, as
// `gotune train train.yaml resume_from_checkpoint=true` does.
func (s *Server) handleResume(w http.ResponseWriter, r *http.Request) {
	var req dirRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	dir, err := s.runDir(req.Dir, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !exists(filepath.Join(dir, ConfigFile)) {
		s.fail(w, r, conflict("%s has no %s to resume with", dir, ConfigFile))
		return
	}
	if _, _, err := ckpt.Latest(dir); err != nil {
		s.fail(w, r, conflict("%s has no checkpoint to resume from yet (a run saves one every save_steps)", dir))
		return
	}
	if _, err := s.jobs.start(dir, "resume_from_checkpoint=true"); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, s.jobs.status(dir, false))
}

// handleChart draws one metric of one or more runs: ?metric=loss&dir=A&dir=B.
func (s *Server) handleChart(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	metric := q.Get("metric")
	if metric == "" {
		metric = "loss"
	}
	if _, ok := (plot.Record{}).Value(metric); !ok {
		keys := make([]string, len(plot.Metrics))
		for i, m := range plot.Metrics {
			keys[i] = m.Key
		}
		s.fail(w, r, badRequest("metric %q: want one of %s", metric, strings.Join(keys, ", ")))
		return
	}
	dirs := q["dir"]
	if len(dirs) == 0 || len(dirs) > len(plot.Palette) {
		s.fail(w, r, badRequest("dir: give 1 to %d run folders", len(plot.Palette)))
		return
	}
	var names []string
	var logs [][]plot.Record
	for _, d := range dirs {
		dir, err := s.runDir(d, false)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		recs, err := plot.ReadLog(filepath.Join(dir, runlog.FileName))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		names = append(names, s.display(dir))
		logs = append(logs, recs)
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(plot.MetricChart(metric, names, logs).SVG())
}

// signaled is the signal that ended a child, 0 when it exited by itself.
func signaled(err error) syscall.Signal {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}
