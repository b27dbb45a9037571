package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"gotune/compute"
	"gotune/quant"
)

// MemTotal returns the machine's memory from /proc/meminfo.
func MemTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read total memory: %w (give --ram)", err)
	}
	defer f.Close()
	return ParseMemTotal(f)
}

// ParseMemTotal extracts MemTotal (bytes) from a /proc/meminfo listing.
func ParseMemTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: MemTotal: expected \"<number> kB\", got %q", strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0, fmt.Errorf("/proc/meminfo: MemTotal: %q is not a positive number", f[0])
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("/proc/meminfo: %w", err)
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemTotal line")
}

// Probe measures on be the throughput of float32 matrix products and of
// products with an NF4 weight (expanded block by block first, as the block
// over the compute seam runs QLoRA), in GFLOP/s, spending about budget on
// each. The products have the shape of a training step's projections:
// tokens rows of activations times a rows×cols weight.
func Probe(be compute.Backend, budget time.Duration, tokens, rows, cols int) (f32, nf4 float64, err error) {
	if tokens < 1 || rows < 1 || cols < 1 {
		return 0, 0, fmt.Errorf("probe: sizes %d×%d×%d must be positive", tokens, rows, cols)
	}
	hb := make([]float32, rows*cols)
	for i := range hb {
		hb[i] = float32(i%5)*0.1 - 0.2
	}
	ha := make([]float32, tokens*cols)
	for i := range ha {
		ha[i] = float32(i%7)*0.1 - 0.3
	}
	var ts []compute.Tensor
	defer func() {
		for _, t := range ts {
			t.Free()
		}
	}()
	alloc := func(dt compute.DType, n int) compute.Tensor {
		if err != nil {
			return nil
		}
		var t compute.Tensor
		if t, err = be.Alloc(dt, n); err == nil {
			ts = append(ts, t)
		}
		return t
	}
	a, b, c := alloc(compute.F32, len(ha)), alloc(compute.F32, len(hb)), alloc(compute.F32, tokens*rows)
	if err != nil {
		return 0, 0, fmt.Errorf("probe: %w", err)
	}
	be.Upload(a, ha)
	be.Upload(b, hb)
	flops := 2 * float64(tokens) * float64(rows) * float64(cols)
	f32 = rate(budget, flops, func() {
		be.Gemm(false, true, tokens, rows, cols, 1, a, cols, b, cols, 0, c, rows)
		err = be.Sync()
	})
	if err != nil {
		return 0, 0, fmt.Errorf("probe: %w", err)
	}
	q, qerr := quant.Quantize(hb, rows, cols, quant.Options{Type: quant.NF4, DoubleQuant: true})
	if qerr != nil {
		return f32, 0, fmt.Errorf("probe: %w", qerr)
	}
	packed, scales, code, block, ok := q.Packed4()
	if !ok {
		return f32, 0, fmt.Errorf("probe: an NF4 matrix without 4-bit codes")
	}
	p, sc, cb := alloc(compute.U8, len(packed)), alloc(compute.F32, len(scales)), alloc(compute.F32, len(code))
	if err != nil {
		return f32, 0, fmt.Errorf("probe: %w", err)
	}
	be.UploadBytes(p, packed)
	be.Upload(sc, scales)
	be.Upload(cb, code[:])
	nf4 = rate(budget, flops, func() {
		be.Dequantize4(b, p, sc, cb, rows*cols, block)
		be.Gemm(false, true, tokens, rows, cols, 1, a, cols, b, cols, 0, c, rows)
		err = be.Sync()
	})
	if err != nil {
		return f32, 0, fmt.Errorf("probe: %w", err)
	}
	return f32, nf4, nil
}

// ProbeExp measures exponentials per second (millions) on be as a training
// step computes them: the SiLU of a slice, right after a matrix product as
// in a step.
func ProbeExp(be compute.Backend, budget time.Duration) (float64, error) {
	const n, k = 1 << 18, 256
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i%97)*0.01 - 0.5
	}
	var ts []compute.Tensor
	defer func() {
		for _, t := range ts {
			t.Free()
		}
	}()
	for _, size := range []int{n, n, k * k, k * k} {
		t, err := be.Alloc(compute.F32, size)
		if err != nil {
			return 0, fmt.Errorf("probe: %w", err)
		}
		ts = append(ts, t)
	}
	x, y, a, c := ts[0], ts[1], ts[2], ts[3]
	be.Upload(x, src)
	var err error
	fn := func() {
		be.Gemm(false, true, k, k, k, 1, a, k, a, k, 0, c, k)
		be.Activate(y, x, compute.SiLU)
		err = be.Sync()
	}
	fn()
	reps := 0
	start := time.Now()
	for reps < 3 || time.Since(start) < budget {
		fn()
		reps++
	}
	if err != nil {
		return 0, fmt.Errorf("probe: %w", err)
	}
	return float64(n) * float64(reps) / time.Since(start).Seconds() / 1e6, nil
}

// rate runs fn once to warm up, then repeatedly for about budget, and
// returns GFLOP/s.
func rate(budget time.Duration, flops float64, fn func()) float64 {
	fn()
	reps := 0
	start := time.Now()
	for reps < 3 || time.Since(start) < budget {
		fn()
		reps++
	}
	return flops * float64(reps) / time.Since(start).Seconds() / 1e9
}

// CountRecords counts the training records of a dataset file quickly,
// without validating them: JSON Lines (.jsonl, .ndjson: non-blank lines),
// a JSON array (.json: top-level elements), Parquet (row count from the
// footer) and plain text (.txt: non-blank lines).
func CountRecords(path string) (int64, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".parquet" {
		return countParquet(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("count records: %w", err)
	}
	defer f.Close()
	switch ext {
	case ".jsonl", ".ndjson", ".txt", ".text":
		return countLines(f, path)
	case ".json":
		return countJSONArray(f, path)
	}
	return 0, fmt.Errorf("%s: unknown dataset format %q (want .json, .jsonl, .parquet or .txt)", path, ext)
}

func countLines(r io.Reader, path string) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var n int64
	blank := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(chunk)) > 0 {
			blank = false
		}
		if err == bufio.ErrBufferFull {
			continue // a long line: keep reading it
		}
		if len(chunk) > 0 && (err == nil || err == io.EOF) {
			if !blank {
				n++
			}
			blank = true
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	}
}

func countJSONArray(r io.Reader, path string) (int64, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	tok, err := dec.Token()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return 0, fmt.Errorf("%s: expected a JSON array of records, found %v", path, tok)
	}
	var n int64
	for dec.More() {
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return 0, fmt.Errorf("%s: record %d: %w", path, n+1, err)
		}
		n++
	}
	if _, err := dec.Token(); err != nil {
		return 0, fmt.Errorf("%s: after record %d: %w", path, n, err)
	}
	return n, nil
}

func countParquet(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("count records: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("count records: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return pf.NumRows(), nil
}

// SourceBytes sums the safetensors files of a model folder: loading maps
// and reads them whole.
func SourceBytes(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", dir, err)
	}
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return 0, fmt.Errorf("model weights: %w", err)
		}
		n += st.Size()
	}
	return n, nil
}
