package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func allKV() []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"u8", uint8(200)}, {"i8", int8(-5)}, {"u16", uint16(60000)}, {"i16", int16(-3000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-7)}, {"f32", float32(1.5)}, {"bool", true},
		{"u64", uint64(1 << 40)}, {"i64", int64(-1 << 40)}, {"f64", 2.25},
		{"strs", []string{"a", "", "héllo wörld"}}, {"i32s", []int32{1, -2, 3}}, {"f32s", []float32{0.5, -1}},
		{"u8s", []uint8{1, 2}}, {"i64s", []int64{-9}}, {"bools", []bool{true, false}}, {"f64s", []float64{3.5}},
		{"u32s", []uint32{7}}, {"emptys", []string{}},
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 64*3)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	// Values exactly representable in half precision round-trip through F16.
	halfVals := make([]float32, len(vals))
	for i, v := range vals {
		halfVals[i] = f16val(f16bits(v))
	}
	bfVals := make([]float32, len(vals))
	for i, v := range vals {
		bfVals[i] = math.Float32frombits(math.Float32bits(v) &^ 0xffff)
	}
	cases := []struct {
		name string
		typ  TensorType
		in   []float32
	}{
		{"f32", F32, vals}, {"f16", F16, halfVals}, {"bf16", BF16, bfVals},
	}
	var tensors []Tensor
	for _, c := range cases {
		tt, err := NewTensor(c.name, []int{3, 64}, c.in, c.typ)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, tt)
	}
	// A 1-D tensor whose size is not a multiple of the alignment forces padding.
	odd, _ := NewTensor("odd", []int{5}, vals[:5], F32)
	tensors = append(tensors, odd)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, allKV(), tensors); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || f.Alignment != 32 {
		t.Errorf("version %d alignment %d", f.Version, f.Alignment)
	}
	if !reflect.DeepEqual(f.KV(), allKV()) {
		t.Errorf("metadata differs:\n got %#v\nwant %#v", f.KV(), allKV())
	}
	for _, c := range cases {
		got, ti, err := f.TensorFloat32s(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ti.Dims, []uint64{64, 3}) || ti.Type != c.typ || ti.Offset%32 != 0 {
			t.Errorf("%s: info %+v", c.name, ti)
		}
		if !reflect.DeepEqual(got, c.in) {
			t.Errorf("%s: values differ after round trip", c.name)
		}
	}
	if got, _, _ := f.TensorFloat32s("odd"); !reflect.DeepEqual(got, vals[:5]) {
		t.Errorf("odd: %v", got)
	}
	// Getters.
	if s, ok := f.String("general.architecture"); !ok || s != "llama" {
		t.Error("String")
	}
	if v, ok := f.Int("u32"); !ok || v != 4000000000 {
		t.Error("Int u32", v)
	}
	if v, ok := f.Int("i8"); !ok || v != -5 {
		t.Error("Int i8", v)
	}
	if _, ok := f.Int("f32"); ok {
		t.Error("Int accepted a float")
	}
	if v, ok := f.Ints("i32s"); !ok || !reflect.DeepEqual(v, []int64{1, -2, 3}) {
		t.Error("Ints", v)
	}
	if v, ok := f.Float("f32"); !ok || v != 1.5 {
		t.Error("Float")
	}
	if v, ok := f.Float32s("f32s"); !ok || !reflect.DeepEqual(v, []float32{0.5, -1}) {
		t.Error("Float32s")
	}
	if v, ok := f.Bool("bool"); !ok || !v {
		t.Error("Bool")
	}
	if v, ok := f.Strings("strs"); !ok || v[2] != "héllo wörld" {
		t.Error("Strings")
	}
	// The writer leaves no temporary files behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries, want only the output", len(ents))
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		kv      []KV
		tensors []Tensor
		want    string
	}{
		{"bad go type", []KV{{"x", 3}}, nil, "no GGUF type"},
		{"dup key", []KV{{"x", "a"}, {"x", "b"}}, nil, "twice"},
		{"short data", nil, []Tensor{{Name: "t", Dims: []uint64{4}, Type: F32, Data: make([]byte, 8)}}, "needs 16"},
		{"block", nil, []Tensor{{Name: "t", Dims: []uint64{20}, Type: Q8_0, Data: nil}}, "block size"},
		{"bad align", []KV{{"general.alignment", uint32(3)}}, nil, "power of two"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".gguf")
			err := Write(path, c.kv, c.tensors)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if _, serr := os.Stat(path); serr == nil {
				t.Error("a failed write left the output file")
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %d files", len(ents))
	}
}

func TestCustomAlignment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.gguf")
	a, _ := NewTensor("a", []int{3}, []float32{1, 2, 3}, F32)
	b, _ := NewTensor("b", []int{2}, []float32{4, 5}, F32)
	if err := Write(path, []KV{{"general.alignment", uint32(64)}}, []Tensor{a, b}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, _ := f.Tensor("b")
	if f.Alignment != 64 || ti.Offset != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, offset of b %d, data at %d", f.Alignment, ti.Offset, f.DataOffset)
	}
	if v, _, _ := f.TensorFloat32s("b"); !reflect.DeepEqual(v, []float32{4, 5}) {
		t.Error(v)
	}
}

// header builds a GGUF prefix by hand for malformed-input tests.
func header(version uint32, nTensors, nKV uint64, rest ...[]byte) []byte {
	var b bytes.Buffer
	b.WriteString("GGUF")
	binary.Write(&b, binary.LittleEndian, version)
	binary.Write(&b, binary.LittleEndian, nTensors)
	binary.Write(&b, binary.LittleEndian, nKV)
	for _, r := range rest {
		b.Write(r)
	}
	return b.Bytes()
}

func le(vs ...any) []byte {
	var b bytes.Buffer
	for _, v := range vs {
		if s, ok := v.(string); ok {
			binary.Write(&b, binary.LittleEndian, uint64(len(s)))
			b.WriteString(s)
			continue
		}
		binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", []byte("GGML\x03\x00\x00\x00"), "not a GGUF file"},
		{"version 1", header(1, 0, 0), "version 1"},
		{"huge kv count", header(3, 0, 1<<62), "metadata count"},
		{"huge tensor count", header(3, 1<<62, 0), "tensor count"},
		{"huge string", header(3, 0, 1, le(uint64(1<<60)), make([]byte, 16)), "need"},
		{"huge array", header(3, 0, 1, le("k", uint32(TypeArray), uint32(TypeUint32), uint64(1<<61))), "exceeds"},
		{"huge string array", header(3, 0, 1, le("k", uint32(TypeArray), uint32(TypeString), uint64(1<<40))), "exceeds"},
		{"nested array", header(3, 0, 1, le("k", uint32(TypeArray), uint32(TypeArray), uint64(1))), "arrays of arrays"},
		{"bad value type", header(3, 0, 1, le("k", uint32(99))), "unknown value type"},
		{"bad bool", header(3, 0, 1, le("k", uint32(TypeBool), uint8(7))), "bool byte"},
		{"dup key", header(3, 0, 2, le("k", uint32(TypeUint8), uint8(1), "k", uint32(TypeUint8), uint8(1))), "twice"},
		{"bad alignment", header(3, 0, 1, le("general.alignment", uint32(TypeUint32), uint32(48))), "power of two"},
		{"too many dims", header(3, 1, 0, le("t", uint32(5), uint64(1), uint64(1), uint64(1), uint64(1), uint64(1), uint32(0), uint64(0))), "dimensions"},
		{"dims overflow", header(3, 1, 0, le("t", uint32(2), uint64(1<<40), uint64(1<<40), uint32(0), uint64(0))), "overflow"},
		{"unknown tensor type", header(3, 1, 0, le("t", uint32(1), uint64(4), uint32(77), uint64(0))), "unknown tensor type"},
		{"block multiple", header(3, 1, 0, le("t", uint32(1), uint64(20), uint32(Q8_0), uint64(0))), "block size"},
		{"misaligned", header(3, 1, 0, le("t", uint32(1), uint64(4), uint32(F32), uint64(4))), "alignment"},
		{"data past end", header(3, 1, 0, le("t", uint32(1), uint64(1000), uint32(F32), uint64(0)), make([]byte, 16)), "past the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.gguf", c.b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if !strings.Contains(err.Error(), "x.gguf") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestOpenTruncated(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "g.gguf")
	tt, _ := NewTensor("w", []int{8, 32}, make([]float32, 256), F32)
	if err := Write(good, allKV(), []Tensor{tt}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	for _, n := range []int{0, 3, 23, 100, len(b) / 2, len(b) - 1} {
		p := filepath.Join(dir, "t.gguf")
		os.WriteFile(p, b[:n], 0o644)
		if f, err := Open(p); err == nil {
			f.Close()
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	tt, _ := NewTensor("w", []int{2, 32}, make([]float32, 64), Q8_0)
	writeTo(&buf, allKV(), []Tensor{tt})
	f.Add(buf.Bytes())
	f.Add(header(3, 0, 1, le("k", uint32(TypeArray), uint32(TypeString), uint64(3), "a", "b", "c")))
	f.Add(header(2, 1, 0, le("t", uint32(1), uint64(32), uint32(Q4_0), uint64(0))))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		// Whatever parses must be fully readable without panics.
		for _, ti := range g.Tensors() {
			if ti.Elems() > 1<<20 {
				continue
			}
			d, _, err := g.TensorData(ti.Name)
			if err != nil || uint64(len(d)) != ti.Size {
				t.Fatalf("tensor %q: %v", ti.Name, err)
			}
			g.TensorFloat32s(ti.Name)
		}
	})
}
