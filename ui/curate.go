package ui

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gotune/ckpt"
	"gotune/data"
)

// maxCurateBytes bounds the files the page edits whole: curation is for
// looking at and fixing samples, not for rewriting large corpora.
const maxCurateBytes = 64 << 20

// readRecords reads the records of a .json (array, or one object per
// line) or .jsonl file as raw JSON.
func readRecords(p string) ([]json.RawMessage, error) {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".json", ".jsonl":
	default:
		return nil, badRequest("%s: curation edits .json and .jsonl files", filepath.Base(p))
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, notFound("%v", err)
	}
	if st.Size() > maxCurateBytes {
		return nil, badRequest("%s is %d MB; the page edits files up to %d MB", p, st.Size()>>20, maxCurateBytes>>20)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var recs []json.RawMessage
		if err := json.Unmarshal(trimmed, &recs); err != nil {
			return nil, badRequest("%s: not a valid JSON array: %v", p, err)
		}
		return recs, nil
	}
	var recs []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxCurateBytes)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, badRequest("%s:%d: not valid JSON", p, n)
		}
		recs = append(recs, json.RawMessage(append([]byte(nil), line...)))
	}
	return recs, sc.Err()
}

// handleRecords returns a page of a data file's records for editing:
// ?path=P&offset=N&limit=M.
func (s *Server) handleRecords(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := s.resolve(q.Get("path"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	offset, limit := 0, 50
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			s.fail(w, r, badRequest("offset=%q: want a count ≥ 0", v))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 500 {
			s.fail(w, r, badRequest("limit=%q: want 1 to 500", v))
			return
		}
	}
	recs, err := readRecords(p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := struct {
		Path    string            `json:"path"`
		Total   int               `json:"total"`
		Offset  int               `json:"offset"`
		Records []json.RawMessage `json:"records"`
	}{Path: p, Total: len(recs), Offset: offset, Records: []json.RawMessage{}}
	if offset < len(recs) {
		out.Records = recs[offset:min(offset+limit, len(recs))]
	}
	writeJSON(w, out)
}

var entryName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// infoEntryFor is the dataset_info.json entry LLaMA-Factory needs to read
// records of the given format from file.
func infoEntryFor(file, format string) map[string]any {
	e := map[string]any{"file_name": file}
	switch format {
	case data.FormatShareGPT:
		e["formatting"] = "sharegpt"
	case data.FormatOpenAI:
		e["formatting"] = "sharegpt"
		e["columns"] = map[string]string{"messages": "messages"}
		e["tags"] = map[string]string{"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}
	case data.FormatText:
		e["columns"] = map[string]string{"prompt": "text"}
	}
	return e
}

// handleSaveRecords writes the curated records as a JSONL file and adds
// (or updates) its entry in the folder's dataset_info.json, so the result
// is a dataset `gotune train` and LLaMA-Factory read by name.
func (s *Server) handleSaveRecords(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Dir      string            `json:"dir"`
		FileName string            `json:"file_name"`
		Name     string            `json:"name"`
		Records  []json.RawMessage `json:"records"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if !entryName.MatchString(req.Name) {
		s.fail(w, r, badRequest("name %q: letters, digits, '.', '_' and '-' only", req.Name))
		return
	}
	if req.FileName == "" {
		req.FileName = req.Name + ".jsonl"
	}
	if filepath.Base(req.FileName) != req.FileName || strings.ToLower(filepath.Ext(req.FileName)) != ".jsonl" {
		s.fail(w, r, badRequest("file_name %q: a plain .jsonl file name", req.FileName))
		return
	}
	if len(req.Records) == 0 {
		s.fail(w, r, badRequest("records: nothing to save"))
		return
	}
	dir, err := s.resolve(req.Dir, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		s.fail(w, r, notFound("%s: no such folder", dir))
		return
	}
	format := ""
	var out bytes.Buffer
	for i, rec := range req.Records {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(rec, &fields); err != nil {
			s.fail(w, r, badRequest("records[%d]: want a JSON object: %v", i, err))
			return
		}
		f, err := data.DetectFormat(fields)
		if err != nil {
			s.fail(w, r, badRequest("records[%d]: %v", i, err))
			return
		}
		if format == "" {
			format = f
		} else if f != format {
			s.fail(w, r, badRequest("records[%d] is %s but records[0] is %s: one file holds one format", i, f, format))
			return
		}
		// One compact line per record, as JSONL wants.
		if err := json.Compact(&out, rec); err != nil {
			s.fail(w, r, badRequest("records[%d]: %v", i, err))
			return
		}
		out.WriteByte('\n')
	}
	infoPath := filepath.Join(dir, "dataset_info.json")
	info := map[string]json.RawMessage{}
	if b, err := os.ReadFile(infoPath); err == nil {
		if err := json.Unmarshal(b, &info); err != nil {
			s.fail(w, r, badRequest("%s: %v; fix or remove it first", infoPath, err))
			return
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.fail(w, r, err)
		return
	}
	if old, ok := info[req.Name]; ok {
		var e struct {
			FileName string `json:"file_name"`
		}
		json.Unmarshal(old, &e)
		if e.FileName != req.FileName {
			s.fail(w, r, conflict("%s already has an entry %q for %s; pick another name", infoPath, req.Name, e.FileName))
			return
		}
	}
	entry, _ := json.Marshal(infoEntryFor(req.FileName, format))
	info[req.Name] = entry
	infoText, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := ckpt.WriteFileAtomic(filepath.Join(dir, req.FileName), out.Bytes(), 0o644); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := ckpt.WriteFileAtomic(infoPath, append(infoText, '\n'), 0o644); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"path": filepath.Join(dir, req.FileName), "dataset": req.Name, "dataset_dir": dir,
		"format": format, "records": len(req.Records), "entry": json.RawMessage(entry)})
}

// datasetFile is the data file a dataset_info.json entry names ("" when
// it names a folder, a hub dataset or nothing readable).
func datasetFile(dir string, raw json.RawMessage) string {
	var e struct {
		FileName string `json:"file_name"`
	}
	if json.Unmarshal(raw, &e) != nil || e.FileName == "" {
		return ""
	}
	p := filepath.Join(dir, e.FileName)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return ""
	}
	return p
}
