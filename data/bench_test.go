package data

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchFile writes (once per size) a generated JSONL of about mb megabytes
// to the temp dir: Alpaca records of ~1.5 KB with a few duplicates and bad
// lines, the shape of a typical instruction-tuning file.
func benchFile(b *testing.B, mb int) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gotune-data-bench-%dMB.jsonl", mb))
	if st, err := os.Stat(path); err == nil && st.Size() >= int64(mb)<<20 {
		return path
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(9, 9))
	var written int64
	for i := 0; written < int64(mb)<<20; i++ {
		var line string
		switch {
		case i%1000 == 999:
			line = "{not json\n"
		case i%100 == 50:
			line = fmt.Sprintf(`{"instruction":"dup %d","output":"same answer"}`+"\n", i%7)
		default:
			line = fmt.Sprintf(`{"instruction":%q,"input":"","output":%q}`+"\n", sentence(rng, 30), sentence(rng, 220))
		}
		n, _ := w.WriteString(line)
		written += int64(n)
	}
	w.Flush()
	f.Close()
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkInspect measures inspect throughput on a generated JSONL
// (GOTUNE_BENCH_MB, default 64) with the default cleaning (exact and
// near-duplicate detection) and reports MB/s and the process's peak RSS.
// "chars" runs without a tokenizer; "qwen3" tokenizes with the reference
// Qwen3 tokenizer and chat template.
func BenchmarkInspect(b *testing.B) {
	mb := 64
	if s := os.Getenv("GOTUNE_BENCH_MB"); s != "" {
		mb, _ = strconv.Atoi(s)
	}
	path := benchFile(b, mb)
	st, _ := os.Stat(path)
	for _, mode := range []string{"chars", "qwen3"} {
		b.Run(mode, func(b *testing.B) {
			var enc *Encoder
			if mode == "qwen3" {
				var err error
				if enc, err = LoadEncoder("testdata/qwen3", EncodeOptions{CutoffLen: 2048}); err != nil {
					b.Fatal(err)
				}
			}
			cfg := Config{Datasets: []Spec{{Name: "bench", Path: path}}, Clean: DefaultClean()}
			b.SetBytes(st.Size())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rep, err := Inspect(cfg, enc, InspectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if rep.Totals().Samples == 0 {
					b.Fatal("no samples")
				}
			}
			b.ReportMetric(float64(st.Size())*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
			b.ReportMetric(peakRSSMB(), "peakRSS_MB")
		})
	}
}
