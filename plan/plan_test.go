package plan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"gotune/model"
)

func mustShape(t *testing.T, name string) *model.Config {
	t.Helper()
	c, err := model.Shape(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"16G", 16 << 30, false},
		{"16GiB", 16 << 30, false},
		{"16gb", 16 << 30, false},
		{"512M", 512 << 20, false},
		{"1.5T", 3 << 39, false},
		{"64K", 64 << 10, false},
		{"8", 8 << 30, false},
		{" 2 G", 2 << 30, false},
		{"", 0, true},
		{"lots", 0, true},
		{"16X", 0, true},
		{"-1G", 0, true},
		{"1e300T", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	b, err := os.ReadFile("testdata/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{string(b), 24684092 << 10, ""},
		{"MemFree: 1 kB\n", 0, "no MemTotal"},
		{"MemTotal: 12 MB\n", 0, "expected"},
		{"MemTotal: x kB\n", 0, "positive"},
	}
	for _, tt := range tests {
		got, err := ParseMemTotal(strings.NewReader(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMemTotal(%q): error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMemTotal(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestCountRecords(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "rows.parquet")
	type row struct {
		Instruction string `parquet:"instruction"`
	}
	if err := parquet.WriteFile(pq, []row{{"a"}, {"b"}, {"c"}, {"d"}}); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long.jsonl")
	line := `{"text":"` + strings.Repeat("x", 3<<20) + `"}`
	if err := os.WriteFile(long, []byte(line+"\n"+line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    int64
		wantErr string
	}{
		{"testdata/alpaca.jsonl", 3, ""},
		{"testdata/alpaca.json", 2, ""},
		{"testdata/text.txt", 3, ""},
		{pq, 4, ""},
		{long, 2, ""}, // lines longer than the read buffer
		{"testdata/object.json", 0, "expected a JSON array"},
		{"testdata/truncated.json", 0, "truncated.json: record 2"},
		{"testdata/meminfo", 0, "unknown dataset format"},
		{"testdata/missing.jsonl", 0, "missing.jsonl"},
	}
	for _, tt := range tests {
		got, err := CountRecords(tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CountRecords(%s): error %v, want one containing %q", tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CountRecords(%s) = %d, %v; want %d", tt.path, got, err, tt.want)
		}
	}
}

func TestGCHeadroom(t *testing.T) {
	tests := []struct {
		live, perStep, steps int64
		gogc                 int
		want                 int64
	}{
		{1000, 10, 5, 100, 50},     // short run: what was made
		{1000, 10, 500, 100, 1000}, // capped at GOGC% of live
		{1000, 10, 0, 100, 1000},   // long run
		{1000, 10, 0, 50, 500},
		{1000, 10, 7, -1, 70}, // collection off
	}
	for _, tt := range tests {
		if got := gcHeadroom(tt.live, tt.perStep, tt.steps, tt.gogc); got != tt.want {
			t.Errorf("gcHeadroom(%+v) = %d, want %d", tt, got, tt.want)
		}
	}
}

func TestEstimateRejectsBadInput(t *testing.T) {
	cfg := mustShape(t, "tiny")
	bad := *cfg
	bad.Hidden = 0
	// Rows come from package method, which imports this one: stand-ins.
	stub := Row{Method: "stub", Footprint: func(s Shape, o Options) (Footprint, error) {
		return Footprint{Base: s.F32(), Format: "f32"}, nil
	}}
	failing := Row{Method: "failing", Footprint: func(Shape, Options) (Footprint, error) {
		return Footprint{}, errors.New("no such size")
	}}
	tests := []struct {
		cfg  *model.Config
		row  Row
		o    Options
		want string
	}{
		{cfg, Row{Method: "sft"}, Options{}, `method "sft" has no footprint`},
		{cfg, failing, Options{}, "plan: failing: no such size"},
		{cfg, stub, Options{Batch: -1}, "negative"},
		{cfg, stub, Options{Storage: "fp8"}, "storage"},
		{&bad, stub, Options{}, "non-positive"},
		{nil, stub, Options{}, "non-positive"},
	}
	for _, tt := range tests {
		if _, err := EstimateMethod(tt.cfg, tt.row, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("EstimateMethod(%s, %+v): error %v, want %q", tt.row.Method, tt.o, err, tt.want)
		}
	}
	if _, err := EstimateMethod(cfg, stub, Options{}); err != nil {
		t.Errorf("EstimateMethod(stub): %v", err)
	}
}
