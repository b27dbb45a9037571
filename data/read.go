package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// Record is one raw record as read from a file: its top-level fields, still
// undecoded. Bad is set instead of Fields when the record itself could not be
// read (malformed JSON line, a value that is not an object).
type Record struct {
	Loc    Loc
	Fields map[string]json.RawMessage
	Bad    *Issue
	Bytes  int // size of the record in the file, for throughput stats
}

// DataFiles lists the dataset files at path: the file itself, or every
// .json, .jsonl and .parquet file under a folder (its .txt files when there
// are none of those), sorted by name so the order (and so every seeded
// choice made later) is stable.
func DataFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files, texts []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch fileType(p) {
		case "json", "jsonl", "parquet":
			files = append(files, p)
		case "txt":
			texts = append(texts, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dataset folder %s: %w", path, err)
	}
	// Text files make the dataset only in a folder of text files: beside
	// JSON or Parquet data they are notes and licences, not training text
	// (Hugging Face's loader likewise picks one format per folder).
	if len(files) == 0 {
		files = texts
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("dataset folder %s: no .json, .jsonl, .parquet or .txt files", path)
	}
	sort.Strings(files)
	return files, nil
}

func fileType(path string) string {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".json":
		return "json"
	case ".jsonl", ".ndjson":
		return "jsonl"
	case ".parquet":
		return "parquet"
	case ".txt", ".csv", ".arrow":
		return ext[1:]
	}
	return ""
}

// ReadFile streams the records of one file to fn without holding the file in
// memory. A .txt file holds one document per line (blank lines are skipped),
// each read as a record with a "text" field, as Hugging Face's text loader
// (and so LLaMA-Factory) reads it. JSON files may hold an array of objects or
// one object per line; which one is decided by the first non-blank byte, as
// Hugging Face's json loader does. A non-nil error from fn stops the walk and
// is returned.
func ReadFile(path string, fn func(Record) error) error {
	switch t := fileType(path); t {
	case "parquet":
		return readParquet(path, fn)
	case "txt":
		return readText(path, fn)
	case "json", "jsonl":
	default:
		return fmt.Errorf("%s: unsupported file type %q (expected .json, .jsonl, .parquet or .txt)", path, t)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	first, err := firstByte(br)
	if err == io.EOF {
		return nil // an empty file has no records
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if first == '[' {
		return readJSONArray(path, br, fn)
	}
	return readJSONL(path, br, fn)
}

func firstByte(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil {
			return 0, err
		}
		c := b[n-1]
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case 0xEF: // UTF-8 byte order mark
			if bb, err := br.Peek(n + 2); err == nil && bb[n] == 0xBB && bb[n+1] == 0xBF {
				n += 2
				continue
			}
		}
		return c, nil
	}
}

func readText(path string, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	index := 0
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		size := len(line)
		text := strings.TrimRight(line, "\r\n")
		if lineNo == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		if strings.TrimSpace(text) != "" {
			loc := Loc{File: path, Line: lineNo, Index: index}
			index++
			b, merr := json.Marshal(text)
			rec := Record{Loc: loc, Bytes: size, Fields: map[string]json.RawMessage{"text": b}}
			if merr != nil || !utf8.ValidString(text) {
				rec.Fields, rec.Bad = nil, issuef(loc, "", "line is not valid UTF-8 text")
			}
			if ferr := fn(rec); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

func readJSONL(path string, br *bufio.Reader, fn func(Record) error) error {
	var line []byte
	lineNo, index := 0, 0
	for {
		line = line[:0]
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			line = append(line, chunk...)
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", path, lineNo+1, err)
		}
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		lineNo++
		size := len(line)
		trimmed := bytes.TrimSpace(line)
		if lineNo == 1 {
			trimmed = bytes.TrimPrefix(trimmed, []byte("\xEF\xBB\xBF"))
		}
		if len(trimmed) > 0 {
			rec := Record{Loc: Loc{File: path, Line: lineNo, Index: index}, Bytes: size}
			index++
			if d := nestingDepth(trimmed); d > MaxJSONDepth {
				rec.Bad = syntaxIssue(rec.Loc, "JSON nested deeper than %d levels", MaxJSONDepth)
			} else if err := json.Unmarshal(trimmed, &rec.Fields); err != nil {
				rec.Fields = nil
				var se *json.SyntaxError
				if errors.As(err, &se) {
					rec.Bad = syntaxIssue(rec.Loc, "invalid JSON line (expected one JSON object per line): %s", jsonErr(err))
				} else {
					rec.Bad = issuef(rec.Loc, "", "invalid JSON line (expected one JSON object per line): %s", jsonErr(err))
				}
			}
			if ferr := fn(rec); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("found a JSON %s", te.Value)
	}
	return err.Error()
}

// readJSONArray walks a top-level JSON array with the decoder's token stream
// so only one element is in memory at a time. Records carry the line their
// element starts on, so problems can be found in an editor.
func readJSONArray(path string, br *bufio.Reader, fn func(Record) error) error {
	lines := &lineReader{r: br}
	dec := json.NewDecoder(lines)
	if _, err := dec.Token(); err != nil { // the opening '['
		return fmt.Errorf("%s: %w", path, err)
	}
	var prev int64 = dec.InputOffset()
	for index := 0; dec.More(); index++ {
		var raw json.RawMessage
		loc := Loc{File: path, Index: index, Line: lines.lineAt(skipSpace(lines, dec.InputOffset())), InArray: true}
		if err := dec.Decode(&raw); err != nil {
			// A syntax error leaves the decoder lost: nothing after it can be
			// trusted, so report it and stop reading this file.
			at := dec.InputOffset()
			var se *json.SyntaxError
			if errors.As(err, &se) {
				at = se.Offset
			}
			loc.Line = lines.lineAt(max(at-1, 0))
			return fn(Record{Loc: loc, Bad: syntaxIssue(loc, "invalid JSON: %v; the rest of the file was not read", err)})
		}
		rec := Record{Loc: loc, Bytes: int(dec.InputOffset() - prev)}
		prev = dec.InputOffset()
		if nestingDepth(raw) > MaxJSONDepth {
			rec.Bad = syntaxIssue(loc, "JSON nested deeper than %d levels", MaxJSONDepth)
		} else if err := json.Unmarshal(raw, &rec.Fields); err != nil {
			rec.Fields = nil
			rec.Bad = issuef(loc, "", "array element is not a JSON object (%s)", jsonErr(err))
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		loc := Loc{File: path, Index: -1, Line: lines.lineAt(max(dec.InputOffset()-1, 0)), InArray: true}
		return fn(Record{Loc: loc, Bad: syntaxIssue(loc, "JSON array not closed: %v", err)})
	}
	return nil
}

// MaxJSONDepth bounds the nesting of a dataset record. Real records need a
// handful of levels (messages → tool calls → arguments); the bound keeps a
// hostile file from costing deep recursion in every later decoder.
const MaxJSONDepth = 64

// nestingDepth is the deepest bracket nesting in a JSON text, ignoring
// brackets inside strings; it stops counting once past MaxJSONDepth.
func nestingDepth(b []byte) int {
	depth, most, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr:
			switch c {
			case '\\':
				esc = true
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			if depth > most {
				most = depth
				if most > MaxJSONDepth {
					return most
				}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return most
}

// syntaxIssue is a record that is not well-formed JSON. Training stops at
// such a record unless the user asked to skip them (skip_invalid_json): a
// broken file otherwise trains silently on whatever came before the break.
func syntaxIssue(loc Loc, format string, args ...any) *Issue {
	is := issuef(loc, "", format, args...)
	is.syntax = true
	return is
}

// lineReader counts lines of what passes through it, and remembers enough
// of the recent input to give the line of any offset at or after the last
// one asked about (the JSON decoder reads ahead of what it has parsed).
type lineReader struct {
	r    io.Reader
	off  int64  // offset of buf[head]
	line int    // line number (1-based) at buf[head]
	buf  []byte // input read and not yet passed by a lineAt query
	head int
}

func (l *lineReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.head > len(l.buf)/2 {
		// Compact only once the consumed prefix dominates, so each byte
		// is copied a bounded number of times.
		l.buf = append(l.buf[:0], l.buf[l.head:]...)
		l.head = 0
	}
	l.buf = append(l.buf, p[:n]...)
	return n, err
}

// lineAt is the 1-based line holding byte offset at; offsets must not go
// backwards between calls.
func (l *lineReader) lineAt(at int64) int {
	if l.line == 0 {
		l.line = 1
	}
	if at < l.off {
		at = l.off
	}
	k := int(min(at-l.off, int64(len(l.buf)-l.head)))
	l.line += bytes.Count(l.buf[l.head:l.head+k], []byte{'\n'})
	l.off += int64(k)
	l.head += k
	return l.line
}

// skipSpace moves offset at past JSON whitespace and the comma between
// array elements, so a record's line is the line its element starts on.
func skipSpace(l *lineReader, at int64) int64 {
	rest := l.buf[l.head:]
	for i := max(at-l.off, 0); i < int64(len(rest)); i++ {
		switch rest[i] {
		case ' ', '\t', '\r', '\n', ',':
			continue
		}
		return l.off + i
	}
	return at
}

func readParquet(path string, fn func(Record) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// The parquet library panics on some malformed inputs; a user's file
	// must give an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed parquet file: %v", path, r)
		}
	}()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: not a readable parquet file: %w", path, err)
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	avg := 0
	if n := pf.NumRows(); n > 0 {
		avg = int(st.Size() / n)
	}
	for index := 0; ; index++ {
		row := map[string]any{}
		if rerr := r.Read(&row); rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return fmt.Errorf("%s: row %d: %w", path, index, rerr)
		}
		loc := Loc{File: path, Index: index}
		rec := Record{Loc: loc, Fields: make(map[string]json.RawMessage, len(row)), Bytes: avg}
		for k, v := range row {
			b, merr := json.Marshal(v)
			if merr != nil {
				rec.Fields, rec.Bad = nil, issuef(loc, k, "cannot convert parquet value: %v", merr)
				break
			}
			rec.Fields[k] = b
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
