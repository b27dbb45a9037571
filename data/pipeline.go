package data

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Config is everything that decides which samples come out. Its JSON form
// feeds the cache key.
type Config struct {
	Datasets []Spec `json:"datasets"`
	// Stage is LLaMA-Factory's stage: "sft" (default) wants conversations,
	// "pt" plain text, "rm"/"dpo"/"orpo"/"simpo" preference pairs, "kto"
	// conversations labelled desirable or not (kto_tag).
	Stage  string `json:"stage,omitempty"`
	Strict bool   `json:"strict,omitempty"` // the first bad record is an error
	// SkipInvalidJSON skips records that are not well-formed JSON (and, in
	// a JSON array file, everything after the break) instead of stopping:
	// a broken file must not train on whatever was read before the break
	// unless the user says so.
	SkipInvalidJSON bool          `json:"skip_invalid_json,omitempty"`
	MaxSamples      int           `json:"max_samples,omitempty"` // per dataset, first N kept (0: all)
	Clean           CleanConfig   `json:"clean"`
	Mix             MixConfig     `json:"mix"`
	ValSize         float64       `json:"val_size,omitempty"`
	Encode          EncodeOptions `json:"encode"`

	// Progress, when set, is told how many bytes of the dataset files have
	// been read out of how many, as reading goes (from one goroutine). It
	// changes nothing in the result, so it is not part of the cache key.
	Progress func(done, total int64) `json:"-"`

	// reportOnly lists every problem without stopping (data inspect).
	reportOnly bool
}

func (c Config) wantKind() Kind {
	switch c.Stage {
	case "pt":
		return KindText
	case "rm", "dpo", "orpo", "simpo", "cpo", "ipo":
		return KindPreference
	}
	return KindChat
}

// maxIssues bounds how many individual problems a report lists; the rest
// are only counted.
const maxIssues = 20

var digits = regexp.MustCompile(`[0-9]+`)

// issueClass groups issues for counting: the field (indexes blanked) and
// the reason up to its first colon.
func issueClass(is Issue) string {
	r := is.Reason
	if i := strings.IndexAny(r, ":("); i > 0 {
		r = strings.TrimSpace(r[:i])
	}
	f := digits.ReplaceAllString(is.Field, "N")
	if f != "" {
		return f + ": " + r
	}
	return r
}

// walk streams every dataset through parse → validate → clean and hands the
// kept examples to fn in dataset order. It fills rep's per-source counts.
func walk(cfg Config, rep *Report, fn func(src int, ex *Example) error) error {
	cleaner := NewCleaner(cfg.Clean)
	defer cleaner.Close()
	want := cfg.wantKind()
	var readBytes, totalBytes, filesBytes int64
	if cfg.Progress != nil {
		for _, spec := range cfg.Datasets {
			files, _ := DataFiles(spec.Path) // an error is reported below
			for _, f := range files {
				if fi, err := os.Stat(f); err == nil {
					totalBytes += fi.Size()
				}
			}
		}
	}
	for d, spec := range cfg.Datasets {
		st := rep.source(spec.Name)
		files, err := DataFiles(spec.Path)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", spec.Name, err)
		}
		limit := cfg.MaxSamples
		if spec.NumSamples > 0 && (limit == 0 || spec.NumSamples < limit) {
			limit = spec.NumSamples
		}
		report := func(is Issue) error {
			st.Bad++
			st.BadReasons[issueClass(is)]++
			if cfg.Strict {
				return &RecordError{Issue: is}
			}
			if len(rep.Issues) < maxIssues {
				rep.Issues = append(rep.Issues, is)
			}
			return nil
		}
		filtered := func(loc Loc, why string) {
			st.Filtered[why]++
			if len(rep.Removed) < maxIssues {
				rep.Removed = append(rep.Removed, Issue{Loc: loc, Reason: why})
			}
		}
		for _, file := range files {
			st.Files++
			if fi, err := os.Stat(file); err == nil {
				st.Bytes += fi.Size()
			}
			var p *parser
			err := ReadFile(file, func(rec Record) error {
				st.Records++
				if cfg.Progress != nil {
					readBytes += int64(rec.Bytes)
					cfg.Progress(min(readBytes, totalBytes), totalBytes)
				}
				if rec.Bad != nil {
					if rec.Bad.syntax {
						st.InvalidJSON++
						if !cfg.SkipInvalidJSON && !cfg.reportOnly {
							return &RecordError{Issue: *rec.Bad, Hint: "fix the file, or set skip_invalid_json: true to train without such records"}
						}
					}
					return report(*rec.Bad)
				}
				if p == nil {
					format := spec.Formatting
					if format == FormatAuto {
						f, err := DetectFormat(rec.Fields)
						if err != nil {
							return report(Issue{Loc: rec.Loc, Reason: err.Error()})
						}
						format = f
					}
					st.Formats[format]++
					p = newParser(spec, format, cfg.Stage)
				}
				ex, is := p.parse(rec)
				if is == nil {
					var why string
					if why, is = p.unusable(rec, &ex); why != "" {
						filtered(rec.Loc, why)
						return nil
					}
				}
				if is == nil {
					is = Validate(&ex)
					if is != nil && ex.Kind == KindPreference && ex.Chosen != nil && ex.Rejected != nil && sameAnswer(ex.Chosen, ex.Rejected) {
						st.Identical++
					}
				}
				if is == nil && ex.Kind != want {
					is = issuef(rec.Loc, "", "a %s record in a %q stage dataset (expected %s records)", ex.Kind, or(cfg.Stage, "sft"), want)
				}
				if is != nil {
					return report(*is)
				}
				if why := cleaner.Check(&ex); why != "" {
					filtered(rec.Loc, why)
					return nil
				}
				st.Kept++
				st.count(&ex)
				if err := fn(d, &ex); err != nil {
					return err
				}
				if limit > 0 && st.Kept >= limit {
					return errStop
				}
				return nil
			})
			if fi, serr := os.Stat(file); serr == nil && cfg.Progress != nil {
				// Whole files count in full: separators and a max_samples
				// stop leave bytes no record accounts for.
				filesBytes += fi.Size()
				readBytes = filesBytes
				cfg.Progress(min(readBytes, totalBytes), totalBytes)
			}
			if errors.Is(err, errStop) {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// InspectOptions tunes the report.
type InspectOptions struct {
	Samples int // rendered samples to include (0: 3; negative: none)
}

// Inspect reads the datasets of cfg and reports what is in them and what is
// wrong, streaming: memory does not grow with the file size beyond the
// duplicate detector's few bytes per record. enc may be nil, then lengths
// are in characters and no masks are shown.
func Inspect(cfg Config, enc *Encoder, opts InspectOptions) (*Report, error) {
	if opts.Samples == 0 {
		opts.Samples = 3
	}
	cfg.reportOnly = true
	rep := newReport(cfg)
	if enc == nil {
		rep.Unit = "chars"
	}
	counts := make([]int, len(cfg.Datasets))
	var err error
	if enc == nil {
		err = walk(cfg, rep, func(d int, ex *Example) error {
			counts[d]++
			p, a := splitText(ex)
			rep.addLength(d, utf8.RuneCountInString(p)+utf8.RuneCountInString(a), 0)
			return nil
		})
	} else {
		if err := enc.checkTemplate(cfg); err != nil {
			return nil, err
		}
		err = encodeAll(cfg, enc, rep, func(d int, ex *Example, samples []Sample) error {
			for _, s := range samples {
				counts[d]++
				rep.addSample(d, s)
			}
			if len(rep.Rendered) < opts.Samples {
				if r, err := enc.Render(ex); err == nil {
					rep.Rendered = append(rep.Rendered, renderedSample(ex, r))
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	if err := rep.finishMix(cfg, counts); err != nil {
		return nil, err
	}
	return rep, nil
}

// encodeAll walks the datasets and encodes the kept examples on all CPUs,
// handing the results to sink in the original order (so output does not
// depend on scheduling). Examples that yield no sample are counted in rep.
func encodeAll(cfg Config, enc *Encoder, rep *Report, sink func(d int, ex *Example, samples []Sample) error) error {
	type result struct {
		d       int
		ex      *Example
		samples []Sample
		drop    string
		err     error
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	jobs := make(chan func(), workers*4)
	queue := make(chan chan result, workers*16)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	collected := make(chan error, 1)
	var stopped atomic.Bool
	var encIssues []Issue // merged after the walk: rep.Issues belongs to it
	go func() {
		var first error
		for rc := range queue {
			r := <-rc
			if first != nil {
				continue // drain so producers never block
			}
			if r.err != nil && cfg.Strict {
				first = r.err
				stopped.Store(true)
				continue
			}
			if r.err != nil || r.drop != "" {
				if r.drop == "" {
					r.drop = DropRender
				}
				rep.Sources[r.d].Dropped[r.drop]++
				if r.err != nil && len(encIssues) < maxIssues {
					encIssues = append(encIssues, Issue{Loc: r.ex.Loc, Reason: r.err.Error()})
				}
				continue
			}
			if first = sink(r.d, r.ex, r.samples); first != nil {
				stopped.Store(true)
			}
		}
		collected <- first
	}()
	walkErr := walk(cfg, rep, func(d int, ex *Example) error {
		if stopped.Load() {
			return errStop // the collector failed: stop reading
		}
		cp := *ex // the walk reuses *ex; the encoding job runs later
		ex = &cp
		rc := make(chan result, 1)
		queue <- rc
		jobs <- func() {
			ss, drop, err := enc.Encode(ex, d)
			rc <- result{d, ex, ss, drop, err}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	close(queue)
	failed := <-collected
	for _, is := range encIssues {
		if len(rep.Issues) < maxIssues {
			rep.Issues = append(rep.Issues, is)
		}
	}
	if failed != nil {
		return failed
	}
	return walkErr
}

// CacheKey hashes everything a prepared cache depends on: the config, each
// input file's path, size and modification time, and the encoder's
// fingerprint (tokenizer and template).
func CacheKey(cfg Config, enc *Encoder) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "gotune-data-cache v%d\n", cacheVersion)
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	h.Write(b)
	for _, s := range cfg.Datasets {
		files, err := DataFiles(s.Path)
		if err != nil {
			return "", fmt.Errorf("dataset %q: %w", s.Name, err)
		}
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				return "", err
			}
			abs, _ := filepath.Abs(f)
			fmt.Fprintf(h, "\n%s %d %d", abs, st.Size(), st.ModTime().UnixNano())
		}
	}
	if enc != nil {
		fmt.Fprintf(h, "\nencoder %s", enc.Fingerprint)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// Prepare tokenizes the datasets once into dir/<key>.gtdc and memory-maps
// it; a cache with the same key is reused. Bad records are skipped and
// counted (an error in strict mode); the report is stored in the cache.
func Prepare(cfg Config, enc *Encoder, dir string) (*Cache, error) {
	if enc == nil {
		return nil, fmt.Errorf("prepare: no tokenizer/template")
	}
	if err := enc.checkTemplate(cfg); err != nil {
		return nil, err
	}
	key, err := CacheKey(cfg, enc)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, key+".gtdc")
	if c, err := OpenCache(path); err == nil {
		return c, nil
	}
	paired := cfg.wantKind() == KindPreference
	cw, err := newCacheWriter(path, paired)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	rep := newReport(cfg)
	counts := make([]int, len(cfg.Datasets))
	err = encodeAll(cfg, enc, rep, func(d int, ex *Example, samples []Sample) error {
		for _, s := range samples {
			if err := cw.add(s); err != nil {
				return fmt.Errorf("%s: %w", ex.Loc, err)
			}
			counts[d]++
			rep.addSample(d, s)
		}
		return nil
	})
	if err != nil {
		cw.abort()
		return nil, err
	}
	if err := rep.finishMix(cfg, counts); err != nil {
		cw.abort()
		return nil, err
	}
	if err := cw.finish(rep.trainOrder, rep.valOrder, rep); err != nil {
		return nil, fmt.Errorf("prepare: writing %s: %w", path, err)
	}
	return OpenCache(path)
}

// finishMix mixes the per-dataset sample counts, splits off validation and
// records the outcome (and, for Prepare, the orders).
func (r *Report) finishMix(cfg Config, counts []int) error {
	refs, err := Mix(counts, cfg.Mix)
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	start := make([]int, len(counts))
	for d := 1; d < len(counts); d++ {
		start[d] = start[d-1] + counts[d-1]
	}
	global := make([]int, len(refs))
	for i, ref := range refs {
		global[i] = start[ref.Dataset] + ref.Index
		r.Sources[ref.Dataset].Mixed++
	}
	if cfg.Mix.Strategy != MixRatio && len(cfg.Mix.Ratios) == 0 {
		Shuffle(global, cfg.Mix.Seed)
	}
	train, val, err := SplitVal(global, cfg.ValSize, cfg.Mix.Seed)
	if err != nil {
		return err
	}
	r.Train, r.Val = len(train), len(val)
	r.trainOrder, r.valOrder = train, val
	return nil
}
