// Package hub downloads model and dataset repositories from the Hugging Face
// Hub, or from a mirror that speaks the same HTTP API (hf-mirror and
// ModelScope-style endpoints), into a local cache laid out like the Hub's own:
//
//	<cache>/<type>s--<org>--<name>/refs/<revision>          (holds the commit)
//	<cache>/<type>s--<org>--<name>/snapshots/<commit>/<files>
//
// Repositories come from strangers, so pickled weights (.bin, .pt, .pth, .pkl)
// are never fetched, server-supplied file names are checked to stay inside the
// snapshot folder, listings are size-bounded, and LFS files are verified
// against their sha256 when the server announces one.
package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"gotune/safefile"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is used when neither Client.Endpoint nor $HF_ENDPOINT is set.
const DefaultEndpoint = "https://huggingface.co"

// Limits on what a server may send in a file listing.
const (
	maxListingBytes = 32 << 20
	maxSiblings     = 100_000
	maxErrorBody    = 512
)

// DefaultModelAllow is the file selection for models when Options.Allow is empty.
var defaultModelAllow = []string{"*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.txt"}

// DefaultDatasetAllow is the file selection for datasets when Options.Allow is empty.
var defaultDatasetAllow = []string{"*.json", "*.jsonl", "*.parquet", "*.csv", "*.tsv", "*.txt"}

// pickleExt are refused whatever Allow says: loading them can run code.
var pickleExt = []string{".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}

// Client downloads repositories. The zero value is usable once CacheDir is set;
// NewClient fills the fields from the environment.
type Client struct {
	Endpoint string       // default https://huggingface.co, or $HF_ENDPOINT
	Token    string       // $HF_TOKEN; sent as "Authorization: Bearer <token>"
	CacheDir string       // default $GOTUNE_HOME/hub, else <user cache dir>/gotune/hub
	HTTP     *http.Client // nil: a client with a response-header timeout
	Progress io.Writer    // one line per downloaded file when set
	Offline  bool         // $HF_HUB_OFFLINE=1: like Options.Offline for every call
	// HFCacheDir is the Hugging Face hub cache ($HF_HUB_CACHE, else
	// $HF_HOME/hub, else ~/.cache/huggingface/hub), read only: a snapshot
	// that transformers or huggingface-cli already downloaded is used in
	// place instead of being downloaded a second time. Empty: not consulted.
	HFCacheDir string
}

// Options select what Download fetches.
type Options struct {
	RepoType string   // "model" (default) or "dataset"
	Allow    []string // glob patterns; a pattern without '/' matches the base name
	Offline  bool     // use only the cache; fail if the revision was never downloaded
}

// NewClient returns a Client configured from $HF_ENDPOINT, $HF_TOKEN (or
// $HUGGING_FACE_HUB_TOKEN), $HF_HUB_OFFLINE and $GOTUNE_HOME.
func NewClient() *Client {
	c := &Client{Endpoint: os.Getenv("HF_ENDPOINT"), Token: os.Getenv("HF_TOKEN")}
	if c.Token == "" {
		c.Token = os.Getenv("HUGGING_FACE_HUB_TOKEN")
	}
	switch strings.ToLower(os.Getenv("HF_HUB_OFFLINE")) {
	case "1", "true", "yes", "on":
		c.Offline = true
	}
	if home := os.Getenv("GOTUNE_HOME"); home != "" {
		c.CacheDir = filepath.Join(home, "hub")
	} else if dir, err := os.UserCacheDir(); err == nil {
		c.CacheDir = filepath.Join(dir, "gotune", "hub")
	}
	c.HFCacheDir = hfCacheDir()
	return c
}

// hfCacheDir is where huggingface_hub keeps its cache, by its rules.
func hfCacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HUGGINGFACE_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "huggingface", "hub")
	}
	return ""
}

// hfRepoDir is repo's folder in the Hugging Face cache (the same layout as
// gotune's), or "" when there is none to consult.
func (c *Client) hfRepoDir(repo, typ string) string {
	if c.HFCacheDir == "" || filepath.Clean(c.HFCacheDir) == filepath.Clean(c.CacheDir) {
		return ""
	}
	return filepath.Join(c.HFCacheDir, typ+"s--"+strings.ReplaceAll(repo, "/", "--"))
}

// hfCached is a complete-looking snapshot of revision in the Hugging Face
// cache, for when the Hub cannot be asked: huggingface_hub records refs
// before all files arrive, so a model snapshot must hold config.json too.
func (c *Client) hfCached(repo, typ, revision string) (string, error) {
	dir := c.hfRepoDir(repo, typ)
	if dir == "" {
		return "", errors.New("no Hugging Face cache")
	}
	snap, err := c.cached(dir, revision)
	if err != nil {
		return "", err
	}
	if typ == "model" {
		if _, err := os.Stat(filepath.Join(snap, "config.json")); err != nil {
			return "", fmt.Errorf("snapshot %s has no config.json", snap)
		}
	}
	return snap, nil
}

var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$`)

// ValidRepoID reports whether s is "name" or "org/name" made of Hub repo-id
// characters. It rejects "..", "--" and anything else that could escape or
// collide in the cache layout.
func ValidRepoID(s string) bool {
	parts := strings.Split(s, "/")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if !repoPart.MatchString(p) || strings.Contains(p, "..") || strings.Contains(p, "--") || strings.HasSuffix(p, ".") {
			return false
		}
	}
	return true
}

// Resolve tells a local model/dataset path from a Hub repo id. An existing
// local path is returned as is; "org/name" (exactly one slash, repo-id
// characters) that does not exist locally is remote. Anything else is
// returned unchanged as a local path so that opening it reports the error.
func Resolve(nameOrPath string) (localDir string, isRemote bool) {
	if _, err := os.Stat(nameOrPath); err == nil {
		return nameOrPath, false
	}
	if strings.Count(nameOrPath, "/") == 1 && ValidRepoID(nameOrPath) {
		return "", true
	}
	return nameOrPath, false
}

// RepoDir is the cache folder of a repo: <cache>/<type>s--<org>--<name>.
func (c *Client) RepoDir(repo, repoType string) (string, error) {
	typ, err := normType(repoType)
	if err != nil {
		return "", err
	}
	if !ValidRepoID(repo) {
		return "", fmt.Errorf("hub: invalid repo id %q: want org/name of letters, digits, '.', '_', '-'", repo)
	}
	if c.CacheDir == "" {
		return "", errors.New("hub: no cache directory: set GOTUNE_HOME or Client.CacheDir")
	}
	return filepath.Join(c.CacheDir, typ+"s--"+strings.ReplaceAll(repo, "/", "--")), nil
}

func normType(t string) (string, error) {
	switch t {
	case "", "model":
		return "model", nil
	case "dataset":
		return "dataset", nil
	}
	return "", fmt.Errorf("hub: unknown repo type %q: want \"model\" or \"dataset\"", t)
}

// safeRef checks a revision or commit used as a cache path. Revisions such as
// "refs/pr/1" keep their slashes, as on the Hub.
func safeRef(r string) bool {
	if r == "" || len(r) > 256 || strings.HasPrefix(r, "/") || strings.ContainsAny(r, "\\\x00") {
		return false
	}
	for _, p := range strings.Split(r, "/") {
		if p == "" || p == "." || p == ".." {
			return false
		}
	}
	return true
}

// safeFilePath checks a server-supplied repo file name and returns where it
// lands under snap. Absolute names, ".." components, backslashes, empty
// components and anything resolving outside snap are refused.
func safeFilePath(snap, name string) (string, error) {
	bad := name == "" || len(name) > 1024 || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00:") || filepath.IsAbs(name)
	if !bad {
		for _, p := range strings.Split(name, "/") {
			if p == "" || p == "." || p == ".." {
				bad = true
				break
			}
		}
	}
	if !bad {
		dest := filepath.Join(snap, filepath.FromSlash(name))
		if rel, err := filepath.Rel(snap, dest); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return dest, nil
		}
	}
	return "", fmt.Errorf("unsafe file name %q from server (absolute, '..' or outside the snapshot)", name)
}

func isPickle(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	for _, p := range pickleExt {
		if ext == p {
			return true
		}
	}
	return false
}

// matchAny reports whether name matches one of the globs. A pattern without
// '/' is tried against the base name too, so "*.json" selects "sub/a.json"
// as the Hub's fnmatch-based filters do.
func matchAny(patterns []string, name string) (bool, error) {
	for _, p := range patterns {
		ok, err := path.Match(p, name)
		if err != nil {
			return false, fmt.Errorf("hub: bad allow pattern %q: %w", p, err)
		}
		if !ok && !strings.Contains(p, "/") {
			ok, _ = path.Match(p, path.Base(name))
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

type listing struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// Download fetches the files of repo at revision (default "main") that match
// opt.Allow into the cache and returns the snapshot folder. Files already in
// the snapshot are not fetched again; with opt.Offline (or Client.Offline)
// the network is not touched at all. If the Hub cannot be reached and the
// revision is cached, the cached snapshot is returned.
//
// Every file is written to "<name>.incomplete" beside its final name, synced
// and renamed, so a crash never leaves a partial file under the final name;
// the next Download resumes it with an HTTP Range request. refs/<revision> is
// written last, so its presence means the snapshot is complete. Two Downloads
// of the same repo, in one process or several, serialise on a lock file in
// the repo folder (on platforms with flock; elsewhere they must not overlap).
func (c *Client) Download(ctx context.Context, repo, revision string, opt Options) (string, error) {
	if revision == "" {
		revision = "main"
	}
	typ, err := normType(opt.RepoType)
	if err != nil {
		return "", err
	}
	repoDir, err := c.RepoDir(repo, typ)
	if err != nil {
		return "", err
	}
	if !safeRef(revision) {
		return "", fmt.Errorf("hub: %s: invalid revision %q", repo, revision)
	}
	allow := opt.Allow
	defaultAllow := len(allow) == 0
	if defaultAllow {
		allow = defaultModelAllow
		if typ == "dataset" {
			allow = defaultDatasetAllow
		}
	}
	if _, err := matchAny(allow, ""); err != nil {
		return "", err
	}

	if opt.Offline || c.Offline {
		dir, err := c.cached(repoDir, revision)
		if err != nil {
			if hf, herr := c.hfCached(repo, typ, revision); herr == nil {
				return hf, nil
			}
			return "", fmt.Errorf("hub: %s@%s: offline and not in cache %s: %w", repo, revision, c.CacheDir, err)
		}
		return dir, nil
	}

	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		return "", fmt.Errorf("hub: %s: create cache folder: %w", repo, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(repoDir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("hub: %s: %w", repo, err)
	}
	defer unlock()

	lst, err := c.list(ctx, typ, repo, revision)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) && ctx.Err() == nil {
			// Network trouble, not a refusal: a complete cached snapshot still serves.
			if dir, cerr := c.cached(repoDir, revision); cerr == nil {
				c.logf("hub: %s: %v; using cached snapshot\n", repo, err)
				return dir, nil
			}
			if dir, cerr := c.hfCached(repo, typ, revision); cerr == nil {
				c.logf("hub: %s: %v; using the Hugging Face cache's snapshot %s\n", repo, err, dir)
				return dir, nil
			}
		}
		return "", err
	}
	commit := lst.SHA
	if commit == "" {
		commit = revision // some mirrors omit the sha; the revision then names the snapshot
	}
	if !safeRef(commit) || strings.Contains(commit, "/") {
		return "", fmt.Errorf("hub: %s@%s: server returned invalid commit %q", repo, revision, commit)
	}
	snap := filepath.Join(repoDir, "snapshots", commit)

	type job struct{ name, dest string }
	var jobs []job
	var skippedPickle []string
	haveSafetensors := false
	for _, s := range lst.Siblings {
		dest, err := safeFilePath(snap, s.RFilename)
		if err != nil {
			return "", fmt.Errorf("hub: %s@%s: %w", repo, revision, err)
		}
		ok, err := matchAny(allow, s.RFilename)
		if err != nil {
			return "", err
		}
		if isPickle(s.RFilename) {
			if ok {
				skippedPickle = append(skippedPickle, s.RFilename)
			}
			continue
		}
		if strings.HasSuffix(s.RFilename, ".safetensors") {
			haveSafetensors = true
		}
		if ok {
			jobs = append(jobs, job{s.RFilename, dest})
		}
	}
	if typ == "model" && defaultAllow && !haveSafetensors {
		for _, s := range lst.Siblings {
			if isPickle(s.RFilename) {
				return "", fmt.Errorf("hub: %s@%s: only pickle weights (%s); gotune refuses pickles by design: use a repo with .safetensors weights", repo, revision, s.RFilename)
			}
		}
	}
	for _, n := range skippedPickle {
		c.logf("hub: %s: skipping %s (pickle files are never downloaded)\n", repo, n)
	}
	if len(jobs) == 0 {
		return "", fmt.Errorf("hub: %s@%s: no files match %v", repo, revision, allow)
	}

	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.name
	}
	if dir := c.hfSnapshot(repo, typ, commit, names); dir != "" {
		c.logf("hub: %s: using %s (already in the Hugging Face cache)\n", repo, dir)
		return dir, nil
	}
	for _, j := range jobs {
		if _, err := os.Stat(j.dest); err == nil {
			continue // final names only ever hold complete files
		}
		if err := c.fetchFile(ctx, typ, repo, commit, j.name, j.dest); err != nil {
			return "", err
		}
	}
	if err := writeAtomic(filepath.Join(repoDir, "refs", filepath.FromSlash(revision)), []byte(commit)); err != nil {
		return "", fmt.Errorf("hub: %s: write ref %s: %w", repo, revision, err)
	}
	return snap, nil
}

// cached returns the snapshot folder recorded for revision, if complete.
func (c *Client) cached(repoDir, revision string) (string, error) {
	if !safeRef(revision) {
		return "", fmt.Errorf("invalid revision %q", revision)
	}
	b, err := os.ReadFile(filepath.Join(repoDir, "refs", filepath.FromSlash(revision)))
	if err != nil {
		return "", fmt.Errorf("no ref %s: %w", revision, err)
	}
	commit := strings.TrimSpace(string(b))
	if !safeRef(commit) || strings.Contains(commit, "/") {
		return "", fmt.Errorf("ref %s holds invalid commit %q", revision, commit)
	}
	snap := filepath.Join(repoDir, "snapshots", commit)
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return "", fmt.Errorf("snapshot %s missing", commit)
	}
	return snap, nil
}

func (c *Client) endpoint() string {
	e := c.Endpoint
	if e == "" {
		e = DefaultEndpoint
	}
	return strings.TrimRight(e, "/")
}

// httpError is a server answer other than success; its message says what to do.
type httpError struct {
	repo, file string
	status     int
	detail     string
}

func (e *httpError) Error() string {
	what := e.repo
	if e.file != "" {
		what += ": " + e.file
	}
	hint := ""
	switch {
	case e.status == http.StatusUnauthorized || e.status == http.StatusForbidden:
		hint = ": access denied (gated, private or missing repo): set HF_TOKEN"
	case e.status == http.StatusNotFound && e.file == "":
		hint = ": no such repo or revision"
	case e.status == http.StatusNotFound:
		hint = ": no such file at this revision"
	}
	msg := fmt.Sprintf("hub: %s: HTTP %d%s", what, e.status, hint)
	if e.detail != "" {
		msg += " (" + e.detail + ")"
	}
	return msg
}

func newHTTPError(resp *http.Response, repo, file string) error {
	detail := resp.Header.Get("X-Error-Message")
	if detail == "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		detail = strings.TrimSpace(string(b))
	}
	detail = strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, detail)
	if len(detail) > maxErrorBody {
		detail = detail[:maxErrorBody]
	}
	return &httpError{repo: repo, file: file, status: resp.StatusCode, detail: detail}
}

// httpClient returns a copy of the configured client whose redirect hook
// records the X-Linked-Etag/X-Linked-Size of the first response: the Hub
// sends them on the redirect to the CDN, not on the CDN's answer.
func (c *Client) httpClient(linked *http.Header) *http.Client {
	var hc http.Client
	if c.HTTP != nil {
		hc = *c.HTTP
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		hc.Transport = tr
	}
	user := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if linked != nil && req.Response != nil && len(via) == 1 {
			*linked = req.Response.Header.Clone()
		}
		if user != nil {
			return user(req, via)
		}
		return nil
	}
	return &hc
}

func (c *Client) newRequest(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "gotune-hub/1")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) list(ctx context.Context, typ, repo, revision string) (*listing, error) {
	u := fmt.Sprintf("%s/api/%ss/%s/revision/%s", c.endpoint(), typ, repo, url.PathEscape(revision))
	req, err := c.newRequest(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("hub: %s: %w", repo, err)
	}
	resp, err := c.httpClient(nil).Do(req)
	if err != nil {
		return nil, fmt.Errorf("hub: %s: list files: %w", repo, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, newHTTPError(resp, repo+"@"+revision, "")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListingBytes+1))
	if err != nil {
		return nil, fmt.Errorf("hub: %s: read file list: %w", repo, err)
	}
	if len(body) > maxListingBytes {
		return nil, fmt.Errorf("hub: %s@%s: file list larger than %d bytes", repo, revision, maxListingBytes)
	}
	var lst listing
	if err := json.Unmarshal(body, &lst); err != nil {
		return nil, fmt.Errorf("hub: %s@%s: file list from %s: invalid JSON: %w", repo, revision, u, err)
	}
	if len(lst.Siblings) > maxSiblings {
		return nil, fmt.Errorf("hub: %s@%s: file list has %d entries, more than the %d allowed", repo, revision, len(lst.Siblings), maxSiblings)
	}
	return &lst, nil
}

// expectedSHA256 returns the LFS sha256 announced in h, or "" when the etag
// is something else (a git blob sha1 for small files, or an opaque CDN tag).
func expectedSHA256(h http.Header) string {
	for _, k := range []string{"X-Linked-Etag", "Etag"} {
		v := strings.TrimPrefix(strings.TrimSpace(h.Get(k)), "W/")
		v = strings.ToLower(strings.Trim(v, `"`))
		if len(v) == 64 {
			if _, err := hex.DecodeString(v); err == nil {
				return v
			}
		}
		if h.Get(k) != "" {
			return ""
		}
	}
	return ""
}

func (c *Client) fetchFile(ctx context.Context, typ, repo, commit, name, dest string) error {
	fail := func(err error) error { return fmt.Errorf("hub: %s: %s: %w", repo, name, err) }
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fail(err)
	}
	prefix := c.endpoint()
	if typ == "dataset" {
		prefix += "/datasets"
	}
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u := fmt.Sprintf("%s/%s/resolve/%s/%s", prefix, repo, url.PathEscape(commit), strings.Join(segs, "/"))

	tmp := dest + ".incomplete"
	start := time.Now()
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return fail(err)
		}
		n, restart, err := c.fetchInto(ctx, f, u, repo, name)
		cerr := f.Close()
		if err == nil {
			err = cerr
		}
		if restart && attempt == 0 {
			// The server refused our resume range: the partial file is unusable.
			if err := os.Remove(tmp); err != nil {
				return fail(err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, dest); err != nil {
			return fail(err)
		}
		syncDir(filepath.Dir(dest))
		secs := time.Since(start).Seconds()
		mbps := 0.0
		if secs > 0 {
			mbps = float64(n) / 1e6 / secs
		}
		c.logf("hub: %s %s %.1f MB %.1f MB/s\n", repo, name, float64(n)/1e6, mbps)
		return nil
	}
}

// fetchInto downloads u into f, resuming after f's current content. It
// returns the final size, or restart=true when the partial content must be
// discarded. A checksum mismatch removes f's file so it is not resumed.
func (c *Client) fetchInto(ctx context.Context, f *os.File, u, repo, name string) (size int64, restart bool, err error) {
	fail := func(err error) error { return fmt.Errorf("hub: %s: %s: %w", repo, name, err) }
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, false, fail(err)
	}
	req, err := c.newRequest(ctx, u)
	if err != nil {
		return 0, false, fail(err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	var linked http.Header
	resp, err := c.httpClient(&linked).Do(req)
	if err != nil {
		return 0, false, fail(err)
	}
	defer resp.Body.Close()
	if linked == nil {
		linked = resp.Header
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)) {
			return 0, true, fail(fmt.Errorf("server resumed at wrong offset: Content-Range %q, want start %d", resp.Header.Get("Content-Range"), have))
		}
	case resp.StatusCode == http.StatusOK:
		// A full answer: the server ignored or did not get our Range.
		if err := f.Truncate(0); err != nil {
			return 0, false, fail(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, false, fail(err)
		}
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return 0, true, fail(errors.New("HTTP 416 on resume"))
	default:
		return 0, false, newHTTPError(resp, repo, name)
	}

	want := expectedSHA256(linked)
	h := sha256.New()
	if want != "" && have > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, have)); err != nil {
			return 0, false, fail(fmt.Errorf("hash partial file: %w", err))
		}
	}
	var w io.Writer = f
	if want != "" {
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return 0, false, fail(fmt.Errorf("download interrupted after %d bytes (resumable): %w", have+n, err))
	}
	size = have + n
	if ls := linked.Get("X-Linked-Size"); ls != "" {
		if wantSize, err := strconv.ParseInt(ls, 10, 64); err == nil && wantSize != size {
			_ = os.Remove(f.Name())
			return 0, false, fail(fmt.Errorf("size %d, server announced %d", size, wantSize))
		}
	}
	if want != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			_ = os.Remove(f.Name())
			return 0, false, fail(fmt.Errorf("sha256 mismatch: got %s, server announced %s", got, want))
		}
	}
	if err := f.Sync(); err != nil {
		return 0, false, fail(err)
	}
	return size, false, nil
}

func (c *Client) logf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format, args...)
	}
}

// writeAtomic writes data to path via a synced temp file in the same folder.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(safefile.FilePerm()) // CreateTemp made it 0600
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable; not every platform can sync a folder, so
// failure is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// hfSnapshot is the Hugging Face cache's snapshot of commit when it holds
// every file this download wants (so nothing need be fetched), else "".
// Files there are symlinks into its blob store; they are read in place.
func (c *Client) hfSnapshot(repo, typ, commit string, names []string) string {
	dir := c.hfRepoDir(repo, typ)
	if dir == "" {
		return ""
	}
	snap := filepath.Join(dir, "snapshots", commit)
	for _, n := range names {
		p, err := safeFilePath(snap, n)
		if err != nil {
			return ""
		}
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return ""
		}
	}
	return snap
}
