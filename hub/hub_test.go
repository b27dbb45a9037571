package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

// fakeHub serves one repo the way the Hub does: a listing API, small files
// from /resolve, and LFS files through a redirect carrying X-Linked-Etag.
type fakeHub struct {
	t        *testing.T
	repo     string
	dataset  bool
	files    map[string][]byte
	lfs      map[string]bool
	extra    []string // listed names with no content (hostile entries)
	badSHA   bool     // announce a wrong sha256 for LFS files
	noRange  bool     // ignore Range headers
	status   int      // non-zero: every request answers this status
	token    string   // required bearer token when set
	mu       sync.Mutex
	gets     map[string]int // file requests by name
	ranges   []string
	auths    []string
	apiCalls int
}

func newFakeHub(t *testing.T) *fakeHub {
	big := bytes.Repeat([]byte("safetensors-payload-"), 5000)
	return &fakeHub{
		t:    t,
		repo: "org/tiny",
		files: map[string][]byte{
			"config.json":            []byte(`{"model_type":"qwen3"}`),
			"tokenizer.json":         []byte(`{"version":"1.0"}`),
			"merges.txt":             []byte("a b\n"),
			"model.safetensors":      big,
			"sub/extra.json":         []byte(`{}`),
			"pytorch_model.bin":      []byte("pickle!"),
			"README.md":              []byte("# tiny"),
			"chat_template.jinja":    []byte("{{ messages }}"),
			"tokenizer_config.json":  []byte(`{}`),
			"generation_config.json": []byte(`{}`),
		},
		lfs:  map[string]bool{"model.safetensors": true},
		gets: map[string]int{},
	}
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if f.status != 0 {
		w.Header().Set("X-Error-Message", "nope")
		http.Error(w, "err", f.status)
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	typ, prefix := "models", ""
	if f.dataset {
		typ, prefix = "datasets", "/datasets"
	}
	p := r.URL.Path
	switch {
	case p == "/api/"+typ+"/"+f.repo+"/revision/main":
		f.mu.Lock()
		f.apiCalls++
		f.mu.Unlock()
		var lst listing
		lst.SHA = commit
		for n := range f.files {
			lst.Siblings = append(lst.Siblings, struct {
				RFilename string `json:"rfilename"`
			}{n})
		}
		for _, n := range f.extra {
			lst.Siblings = append(lst.Siblings, struct {
				RFilename string `json:"rfilename"`
			}{n})
		}
		_ = json.NewEncoder(w).Encode(lst)
	case strings.HasPrefix(p, prefix+"/"+f.repo+"/resolve/"+commit+"/"):
		name := strings.TrimPrefix(p, prefix+"/"+f.repo+"/resolve/"+commit+"/")
		data, ok := f.files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.gets[name]++
		f.mu.Unlock()
		if f.lfs[name] {
			sum := sha256.Sum256(data)
			if f.badSHA {
				sum[0] ^= 1
			}
			w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum[:])+`"`)
			w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
			http.Redirect(w, r, "/cdn/"+name, http.StatusFound)
			return
		}
		w.Header().Set("ETag", `"`+strings.Repeat("ab", 20)+`"`) // git sha1: not checked
		_, _ = w.Write(data)
	case strings.HasPrefix(p, "/cdn/"):
		name := strings.TrimPrefix(p, "/cdn/")
		f.mu.Lock()
		f.ranges = append(f.ranges, r.Header.Get("Range"))
		f.mu.Unlock()
		if f.noRange {
			r.Header.Del("Range")
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.files[name]))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeHub) fileGets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.gets {
		n += v
	}
	return n
}

func setup(t *testing.T, f *fakeHub) (*Client, *httptest.Server) {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Client{Endpoint: srv.URL + "/", CacheDir: t.TempDir()}, srv
}

var wantModelFiles = []string{"config.json", "tokenizer.json", "merges.txt", "model.safetensors", "sub/extra.json", "chat_template.jinja", "tokenizer_config.json", "generation_config.json"}

func TestDownloadAndCache(t *testing.T) {
	f := newFakeHub(t)
	c, srv := setup(t, f)
	var progress bytes.Buffer
	c.Progress = &progress
	dir, err := c.Download(context.Background(), f.repo, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(c.CacheDir, "models--org--tiny", "snapshots", commit); dir != want {
		t.Fatalf("dir = %s, want %s", dir, want)
	}
	for _, n := range wantModelFiles {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil || !bytes.Equal(got, f.files[n]) {
			t.Errorf("%s: content differs (err %v)", n, err)
		}
		if !strings.Contains(progress.String(), " "+n+" ") {
			t.Errorf("no progress line for %s in %q", n, progress.String())
		}
	}
	for _, n := range []string{"pytorch_model.bin", "README.md"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s downloaded, want skipped", n)
		}
		if f.gets[n] != 0 {
			t.Errorf("%s requested %d times", n, f.gets[n])
		}
	}
	ref, err := os.ReadFile(filepath.Join(c.CacheDir, "models--org--tiny", "refs", "main"))
	if err != nil || string(ref) != commit {
		t.Fatalf("refs/main = %q, %v", ref, err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.incomplete"))
	if len(matches) != 0 {
		t.Errorf("leftover temp files %v", matches)
	}

	before := f.fileGets()
	dir2, err := c.Download(context.Background(), f.repo, "main", Options{})
	if err != nil || dir2 != dir {
		t.Fatalf("second download: %s, %v", dir2, err)
	}
	if got := f.fileGets(); got != before {
		t.Errorf("second download made %d file requests, want 0", got-before)
	}

	// Offline: no server at all.
	srv.Close()
	calls := f.apiCalls
	dir3, err := c.Download(context.Background(), f.repo, "main", Options{Offline: true})
	if err != nil || dir3 != dir {
		t.Fatalf("offline: %s, %v", dir3, err)
	}
	if f.apiCalls != calls {
		t.Errorf("offline download called the API")
	}
	// Online but unreachable: falls back to the complete cached snapshot.
	if dir4, err := c.Download(context.Background(), f.repo, "main", Options{}); err != nil || dir4 != dir {
		t.Errorf("unreachable with cache: %s, %v", dir4, err)
	}
	_, err = c.Download(context.Background(), "org/other", "main", Options{Offline: true})
	if err == nil || !strings.Contains(err.Error(), "offline") || !strings.Contains(err.Error(), "org/other") {
		t.Errorf("offline without cache: err = %v", err)
	}
}

func TestDataset(t *testing.T) {
	f := newFakeHub(t)
	f.dataset = true
	f.repo = "org/data"
	f.files = map[string][]byte{
		"data/train-00000.parquet": []byte("PAR1...PAR1"),
		"train.jsonl":              []byte(`{"a":1}` + "\n"),
		"script.py":                []byte("import os"),
	}
	f.lfs = map[string]bool{"data/train-00000.parquet": true}
	c, _ := setup(t, f)
	dir, err := c.Download(context.Background(), f.repo, "main", Options{RepoType: "dataset"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dir, "datasets--org--data") {
		t.Errorf("dir %s", dir)
	}
	for _, n := range []string{"data/train-00000.parquet", "train.jsonl"} {
		if got, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n))); !bytes.Equal(got, f.files[n]) {
			t.Errorf("%s differs", n)
		}
	}
	if f.gets["script.py"] != 0 {
		t.Error("script.py fetched")
	}
}

func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noRange bool
		partial int // bytes already on disk
		corrupt bool
	}{
		{"range", false, 30000, false},
		{"server ignores range", true, 30000, false},
		{"partial longer than file", false, 200000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHub(t)
			f.noRange = tc.noRange
			c, _ := setup(t, f)
			data := f.files["model.safetensors"]
			snap := filepath.Join(c.CacheDir, "models--org--tiny", "snapshots", commit)
			if err := os.MkdirAll(snap, 0o755); err != nil {
				t.Fatal(err)
			}
			part := bytes.Repeat([]byte{'x'}, tc.partial)
			if tc.partial <= len(data) {
				part = data[:tc.partial]
			}
			if err := os.WriteFile(filepath.Join(snap, "model.safetensors.incomplete"), part, 0o644); err != nil {
				t.Fatal(err)
			}
			dir, err := c.Download(context.Background(), f.repo, "main", Options{Allow: []string{"*.safetensors"}})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
			if !bytes.Equal(got, data) {
				t.Fatalf("resumed file differs: %d vs %d bytes", len(got), len(data))
			}
			if want := fmt.Sprintf("bytes=%d-", tc.partial); len(f.ranges) == 0 || f.ranges[0] != want {
				t.Errorf("ranges = %q, want first %q", f.ranges, want)
			}
			if _, err := os.Stat(filepath.Join(snap, "model.safetensors.incomplete")); err == nil {
				t.Error(".incomplete left behind")
			}
		})
	}
}

func TestSHAMismatch(t *testing.T) {
	f := newFakeHub(t)
	f.badSHA = true
	c, _ := setup(t, f)
	_, err := c.Download(context.Background(), f.repo, "main", Options{})
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v", err)
	}
	snap := filepath.Join(c.CacheDir, "models--org--tiny", "snapshots", commit)
	for _, n := range []string{"model.safetensors", "model.safetensors.incomplete"} {
		if _, err := os.Stat(filepath.Join(snap, n)); err == nil {
			t.Errorf("%s exists after checksum failure", n)
		}
	}
	if _, err := os.Stat(filepath.Join(c.CacheDir, "models--org--tiny", "refs", "main")); err == nil {
		t.Error("ref written for an incomplete snapshot")
	}
}

func TestTraversalRejected(t *testing.T) {
	for _, name := range []string{"../evil.json", "/etc/evil.json", "a/../../evil.json", `..\evil.json`, "a//b.json", "./x.json", "c:/evil.json"} {
		t.Run(name, func(t *testing.T) {
			f := newFakeHub(t)
			f.extra = []string{name}
			c, _ := setup(t, f)
			_, err := c.Download(context.Background(), f.repo, "main", Options{})
			if err == nil || !strings.Contains(err.Error(), "unsafe file name") {
				t.Fatalf("err = %v", err)
			}
			if f.fileGets() != 0 {
				t.Error("files fetched despite a hostile listing")
			}
			if _, err := os.Stat(filepath.Join(c.CacheDir, "models--org--tiny", "evil.json")); err == nil {
				t.Error("file written outside snapshot")
			}
		})
	}
}

func TestPickleOnlyRefused(t *testing.T) {
	f := newFakeHub(t)
	delete(f.files, "model.safetensors")
	c, _ := setup(t, f)
	_, err := c.Download(context.Background(), f.repo, "main", Options{})
	if err == nil || !strings.Contains(err.Error(), "pickle") || !strings.Contains(err.Error(), "safetensors") {
		t.Fatalf("err = %v", err)
	}
	// Asking for pickles explicitly still never fetches them.
	f.files["model.safetensors"] = []byte("x")
	if _, err := c.Download(context.Background(), f.repo, "main", Options{Allow: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if f.gets["pytorch_model.bin"] != 0 {
		t.Error("pickle fetched with Allow *")
	}
}

func TestAuthHeader(t *testing.T) {
	for _, token := range []string{"", "hf_secret"} {
		f := newFakeHub(t)
		c, _ := setup(t, f)
		c.Token = token
		f.token = token
		if _, err := c.Download(context.Background(), f.repo, "main", Options{Allow: []string{"*.safetensors", "config.json"}}); err != nil {
			t.Fatal(err)
		}
		want := ""
		if token != "" {
			want = "Bearer " + token
		}
		for _, a := range f.auths {
			if a != want {
				t.Errorf("token %q: Authorization = %q, want %q", token, a, want)
			}
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   []string
	}{
		{404, []string{"org/tiny", "404", "no such repo or revision", "nope"}},
		{401, []string{"org/tiny", "401", "set HF_TOKEN"}},
		{403, []string{"403", "set HF_TOKEN"}},
		{500, []string{"org/tiny", "500"}},
	} {
		f := newFakeHub(t)
		f.status = tc.status
		c, _ := setup(t, f)
		_, err := c.Download(context.Background(), f.repo, "main", Options{})
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("status %d: err = %v, want it to contain %q", tc.status, err, w)
			}
		}
	}
	// A missing token with a server that requires one.
	f := newFakeHub(t)
	f.token = "x"
	c, _ := setup(t, f)
	if _, err := c.Download(context.Background(), f.repo, "main", Options{}); err == nil || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("err = %v", err)
	}
}

func TestFileErrorNamesFile(t *testing.T) {
	f := newFakeHub(t)
	f.extra = []string{"missing.json"}
	c, _ := setup(t, f)
	_, err := c.Download(context.Background(), f.repo, "main", Options{})
	if err == nil || !strings.Contains(err.Error(), "missing.json") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentDownloads(t *testing.T) {
	f := newFakeHub(t)
	c, _ := setup(t, f)
	c2 := *c
	var wg sync.WaitGroup
	dirs := make([]string, 2)
	errs := make([]error, 2)
	for i, cl := range []*Client{c, &c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = cl.Download(context.Background(), f.repo, "main", Options{})
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || dirs[0] != dirs[1] {
		t.Fatalf("dirs %v errs %v", dirs, errs)
	}
	for n, k := range f.gets {
		if k != 1 {
			t.Errorf("%s fetched %d times, want 1", n, k)
		}
	}
	for _, n := range wantModelFiles {
		if got, _ := os.ReadFile(filepath.Join(dirs[0], filepath.FromSlash(n))); !bytes.Equal(got, f.files[n]) {
			t.Errorf("%s differs", n)
		}
	}
}

func TestResolve(t *testing.T) {
	local := t.TempDir()
	for _, tc := range []struct {
		in     string
		dir    string
		remote bool
	}{
		{local, local, false},
		{"Qwen/Qwen3-0.6B", "", true},
		{"meta-llama/Llama-3.2-1B-Instruct", "", true},
		{"gpt2", "gpt2", false},
		{"a/b/c", "a/b/c", false},
		{"../x", "../x", false},
		{"org/..", "org/..", false},
		{"org/a--b", "org/a--b", false},
		{"/abs/path", "/abs/path", false},
	} {
		dir, remote := Resolve(tc.in)
		if dir != tc.dir || remote != tc.remote {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tc.in, dir, remote, tc.dir, tc.remote)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	c := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir()}
	for _, tc := range []struct {
		repo, rev string
		opt       Options
		want      string
	}{
		{"../x", "main", Options{}, "invalid repo id"},
		{"org/x", "../../etc", Options{}, "invalid revision"},
		{"org/x", "main", Options{RepoType: "space"}, "unknown repo type"},
		{"org/x", "main", Options{Allow: []string{"["}}, "bad allow pattern"},
	} {
		_, err := c.Download(context.Background(), tc.repo, tc.rev, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc, err, tc.want)
		}
	}
}

func TestMatchAny(t *testing.T) {
	for _, tc := range []struct {
		pats []string
		name string
		want bool
	}{
		{[]string{"*.json"}, "config.json", true},
		{[]string{"*.json"}, "sub/a.json", true},
		{[]string{"sub/*.json"}, "sub/a.json", true},
		{[]string{"sub/*.json"}, "other/a.json", false},
		{[]string{"tokenizer.model"}, "tokenizer.model", true},
		{[]string{"*.safetensors"}, "model.safetensors.index.json", false},
	} {
		if got, err := matchAny(tc.pats, tc.name); err != nil || got != tc.want {
			t.Errorf("matchAny(%v, %q) = %v, %v", tc.pats, tc.name, got, err)
		}
	}
}

func TestNewClientEnv(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "https://hf-mirror.com")
	t.Setenv("HF_TOKEN", "tok")
	t.Setenv("GOTUNE_HOME", "/tmp/gh")
	t.Setenv("HF_HUB_OFFLINE", "1")
	c := NewClient()
	if c.Endpoint != "https://hf-mirror.com" || c.Token != "tok" || c.CacheDir != filepath.Join("/tmp/gh", "hub") || !c.Offline {
		t.Errorf("NewClient = %+v", c)
	}
	t.Setenv("HF_ENDPOINT", "")
	if got := NewClient().endpoint(); got != DefaultEndpoint {
		t.Errorf("default endpoint %q", got)
	}
}

func TestListingBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"sha":"` + commit + `","siblings":[`))
		chunk := []byte(strings.Repeat(`{"rfilename":"a.json"},`, 10000))
		for i := 0; i < 200; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c := &Client{Endpoint: srv.URL, CacheDir: t.TempDir()}
	_, err := c.Download(context.Background(), "org/huge", "main", Options{})
	if err == nil || !strings.Contains(err.Error(), "file list larger") {
		t.Fatalf("err = %v", err)
	}
}

// hfCacheWith lays out files as huggingface_hub does: blobs, a snapshot of
// symlinks to them, and refs/main.
func hfCacheWith(t *testing.T, root, repo string, files map[string][]byte, skip string) {
	t.Helper()
	repoDir := filepath.Join(root, "models--"+strings.ReplaceAll(repo, "/", "--"))
	for name, data := range files {
		if name == skip || name == "pytorch_model.bin" || name == "README.md" {
			continue
		}
		sum := sha256.Sum256(data)
		blob := filepath.Join(repoDir, "blobs", hex.EncodeToString(sum[:]))
		must(t, os.MkdirAll(filepath.Dir(blob), 0o755))
		must(t, os.WriteFile(blob, data, 0o644))
		link := filepath.Join(repoDir, "snapshots", commit, filepath.FromSlash(name))
		must(t, os.MkdirAll(filepath.Dir(link), 0o755))
		rel, err := filepath.Rel(filepath.Dir(link), blob)
		must(t, err)
		must(t, os.Symlink(rel, link))
	}
	must(t, os.MkdirAll(filepath.Join(repoDir, "refs"), 0o755))
	must(t, os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(commit), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHuggingFaceCacheReused: a model transformers already downloaded into
// the Hugging Face cache is used from there, with no file fetched again;
// an incomplete snapshot there is not trusted; offline, the Hugging Face
// cache serves too.
func TestHuggingFaceCacheReused(t *testing.T) {
	f := newFakeHub(t)
	c, _ := setup(t, f)
	c.HFCacheDir = t.TempDir()
	hfCacheWith(t, c.HFCacheDir, f.repo, f.files, "")
	dir, err := c.Download(context.Background(), f.repo, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(c.HFCacheDir, "models--org--tiny", "snapshots", commit); dir != want {
		t.Errorf("dir = %s, want the Hugging Face snapshot %s", dir, want)
	}
	if n := f.fileGets(); n != 0 {
		t.Errorf("%d files downloaded again", n)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "model.safetensors")); err != nil || !bytes.Equal(got, f.files["model.safetensors"]) {
		t.Errorf("weights through the snapshot symlink: %v", err)
	}

	// Offline: the Hugging Face cache answers when gotune's has nothing.
	c.Offline = true
	if dir2, err := c.Download(context.Background(), f.repo, "", Options{}); err != nil || dir2 != dir {
		t.Errorf("offline: %s, %v", dir2, err)
	}
	c.Offline = false

	// A snapshot missing a wanted file is downloaded into gotune's cache.
	f2 := newFakeHub(t)
	c2, _ := setup(t, f2)
	c2.HFCacheDir = t.TempDir()
	hfCacheWith(t, c2.HFCacheDir, f2.repo, f2.files, "model.safetensors")
	dir, err = c2.Download(context.Background(), f2.repo, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir, c2.CacheDir) || f2.gets["model.safetensors"] != 1 {
		t.Errorf("incomplete Hugging Face snapshot trusted: dir %s, weights fetched %d times", dir, f2.gets["model.safetensors"])
	}
}

func TestHuggingFaceCacheDirFromEnv(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HUGGINGFACE_HUB_CACHE", "")
	t.Setenv("HF_HOME", "/x/hf")
	if got := NewClient().HFCacheDir; got != filepath.Join("/x/hf", "hub") {
		t.Errorf("HF_HOME: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/y/cache")
	if got := NewClient().HFCacheDir; got != "/y/cache" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
}
