package quant

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata goldens")

type store map[string]NamedTensor

func (s store) get(name string) (string, []int, []byte, bool) {
	t, ok := s[name]
	return t.DType, t.Shape, t.Data, ok
}

func toStore(ts []NamedTensor) store {
	s := store{}
	for _, t := range ts {
		// Copy, as a safetensors writer would: Data may alias the matrix.
		t.Data = slices.Clone(t.Data)
		s[t.Name] = t
	}
	return s
}

func TestTensorsRoundTrip(t *testing.T) {
	rows, cols := 19, 77
	w := normals(4, rows*cols, 0.03)
	for _, opt := range kernelOpts {
		m := mustQuantize(t, w, rows, cols, opt)
		s := toStore(m.Tensors("model.layers.0.mlp.up_proj"))
		back, err := FromTensors("model.layers.0.mlp.up_proj", s.get)
		if err != nil {
			t.Fatalf("%v: FromTensors: %v", opt.Type, err)
		}
		if back.Rows() != rows || back.Cols() != cols || back.Type() != opt.Type || back.BlockSize() != m.BlockSize() || back.DoubleQuant() != m.DoubleQuant() || back.Bytes() != m.Bytes() {
			t.Errorf("%v: loaded %d×%d %v bs %d dq %v (%d bytes), want %d×%d %v bs %d dq %v (%d bytes)", opt.Type,
				back.Rows(), back.Cols(), back.Type(), back.BlockSize(), back.DoubleQuant(), back.Bytes(),
				rows, cols, m.Type(), m.BlockSize(), m.DoubleQuant(), m.Bytes())
		}
		// Code books survive bit for bit.
		for i := range m.code {
			if math.Float32bits(m.code[i]) != math.Float32bits(back.code[i]) {
				t.Errorf("%v: code[%d] %v loaded as %v", opt.Type, i, m.code[i], back.code[i])
			}
		}
		if m.nestedCode != nil && *m.nestedCode != *back.nestedCode {
			t.Errorf("%v: nested code book changed in the round trip", opt.Type)
		}
		if m.offset != back.offset {
			t.Errorf("%v: nested offset %v loaded as %v", opt.Type, m.offset, back.offset)
		}
		a, b := make([]float32, rows*cols), make([]float32, rows*cols)
		m.Dense(a)
		back.Dense(b)
		if !slices.Equal(a, b) {
			t.Errorf("%v: decoded values changed in the round trip", opt.Type)
		}
	}
}

// The key names, dtypes, shapes and quant_state JSON match what
// bitsandbytes writes for Linear4bit / Linear8bitLt (golden file).
func TestTensorsLayoutGolden(t *testing.T) {
	w := normals(9, 6*10, 0.02)
	var b strings.Builder
	for _, opt := range []Options{{Type: NF4}, {Type: FP4, DoubleQuant: true}, {Type: NF4, DoubleQuant: true, BlockSize: 32}, {Type: Int8Row}, {Type: Int8Block}} {
		m := mustQuantize(t, w, 6, 10, opt)
		for _, nt := range m.Tensors("lin") {
			fmt.Fprintf(&b, "%s %s %v", nt.Name, nt.DType, nt.Shape)
			if strings.Contains(nt.Name, "quant_state") {
				b.WriteString(" " + string(nt.Data))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	path := filepath.Join("testdata", "tensors_layout.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("tensor layout differs from %s:\n got:\n%s\nwant:\n%s", path, b.String(), want)
	}
}

func TestPyFloat(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{{0, "0.0"}, {1, "1.0"}, {0.1, "0.1"}, {float64(float32(0.013)), "0.013000000268220901"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {-2.5e-07, "-2.5e-07"}, {1e16, "1e+16"}, {123456.0, "123456.0"}} {
		if got := pyFloat(tc.f); got != tc.want {
			t.Errorf("pyFloat(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestFromTensorsErrors(t *testing.T) {
	w := normals(4, 8*16, 0.03)
	m := mustQuantize(t, w, 8, 16, Options{Type: NF4, DoubleQuant: true})
	base := toStore(m.Tensors("L"))
	mi := mustQuantize(t, w, 8, 16, Options{Type: Int8Row})
	base8 := toStore(mi.Tensors("L"))
	edit := func(s store, f func(store)) store {
		c := store{}
		for k, v := range s {
			c[k] = v
		}
		f(c)
		return c
	}
	st := "L.weight.quant_state.bitsandbytes__nf4"
	setJSON := func(j string) func(store) {
		return func(s store) { s[st] = NamedTensor{st, "U8", []int{len(j)}, []byte(j)} }
	}
	cases := []struct {
		name string
		s    store
		want string
	}{
		{"nothing", store{}, "no quantization state found"},
		{"missing absmax", edit(base, func(s store) { delete(s, "L.weight.absmax") }), "tensor L.weight.absmax is missing"},
		{"wrong dtype", edit(base, func(s store) { x := s["L.weight.absmax"]; x.DType = "F32"; s[x.Name] = x }), "tensor L.weight.absmax has dtype F32, want U8"},
		{"short weight", edit(base, func(s store) { x := s["L.weight"]; x.Data = x.Data[:10]; x.Shape = []int{10, 1}; s[x.Name] = x }), "tensor L.weight has shape [10 1]"},
		{"bad json", edit(base, setJSON(`{"quant_type": "nf4",`)), "quant_state JSON"},
		{"bad shape", edit(base, setJSON(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [128]}`)), "field shape is [128]"},
		{"bad type", edit(base, setJSON(`{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [8, 16]}`)), `field quant_type is "fp4", want "nf4"`},
		{"bad dtype", edit(base, setJSON(`{"quant_type": "nf4", "blocksize": 64, "dtype": "int4", "shape": [8, 16]}`)), `field dtype is "int4"`},
		{"odd block", edit(base, setJSON(`{"quant_type": "nf4", "blocksize": 63, "dtype": "float32", "shape": [8, 16]}`)), "want an even size"},
		{"shape vs data", edit(base, setJSON(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [9, 16], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1}`)), "tensor L.weight has shape"},
		{"nan scale", edit(base8, func(s store) {
			x := s["L.SCB"]
			x.Data = slices.Clone(x.Data)
			copy(x.Data[4:], []byte{0, 0, 0xc0, 0x7f})
			s[x.Name] = x
		}), "tensor L.SCB: element 1 is NaN"},
		{"int8 format", edit(base8, func(s store) { s["L.weight_format"] = NamedTensor{"L.weight_format", "U8", []int{}, []byte{1}} }), "only the row format"},
	}
	for _, tc := range cases {
		_, err := FromTensors("L", tc.s.get)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
