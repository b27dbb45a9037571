package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"gotune/assets"
)

// TestGenerateFromHubRepo: `--model org/name` downloads the repository from
// the Hub endpoint (here a local server holding the bundled model) into the
// cache and generates from it; a second run is served from the cache.
func TestGenerateFromHubRepo(t *testing.T) {
	src, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "src"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var siblings []map[string]string
	for _, e := range entries {
		siblings = append(siblings, map[string]string{"rfilename": e.Name()})
	}
	var fileRequests atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/api/models/test/tiny/revision/main", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"sha": strings.Repeat("a", 40), "siblings": siblings})
	})
	mux.HandleFunc("/test/tiny/resolve/", func(w http.ResponseWriter, r *http.Request) {
		fileRequests.Add(1)
		http.ServeFile(w, r, filepath.Join(src, filepath.Base(r.URL.Path)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("GOTUNE_HOME", t.TempDir())
	t.Setenv("HF_HUB_OFFLINE", "")

	for i := 0; i < 2; i++ {
		var out, errb bytes.Buffer
		if code := run([]string{"generate", "--model", "test/tiny", "--max-new-tokens", "4"}, &out, &errb); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, errb.String())
		}
		if !strings.Contains(errb.String(), "4 generated") {
			t.Errorf("run %d: no generation report in %q", i, errb.String())
		}
	}
	if n := int(fileRequests.Load()); n != len(entries) {
		t.Errorf("%d file requests over two runs, want %d (each file once)", n, len(entries))
	}
}
