package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	f32 := []float32{1, -2.5, 3.25, float32(math.Pi), 0, -0}
	f64 := []float64{1e-300, -7, math.E}
	i64 := []int64{-100, 0, 1 << 40}
	tensors := []Tensor{
		F32Tensor("b.weight", []int{2, 3}, f32),
		{Name: "a.f64", DType: F64, Shape: []int{3}, Data: EncodeF64(f64)},
		{Name: "ids", DType: I64, Shape: []int{1, 3}, Data: EncodeI64(i64)},
		{Name: "half", DType: F16, Shape: []int{2}, Data: EncodeF16([]float32{0.5, -1024})},
		{Name: "brain", DType: BF16, Shape: []int{2}, Data: EncodeBF16([]float32{1.5, -3})},
		{Name: "bytes", DType: U8, Shape: []int{4}, Data: []byte{0, 1, 254, 255}},
		{Name: "i32", DType: I32, Shape: []int{2}, Data: []byte{0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0}},
		{Name: "scalar", DType: F32, Shape: nil, Data: EncodeF32([]float32{42})},
	}
	if err := Write(path, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOne(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, info, err := s.Float32s("b.weight")
	if err != nil || len(info.Shape) != 2 || info.Shape[0] != 2 || info.Shape[1] != 3 {
		t.Fatalf("b.weight: %v %v", info, err)
	}
	for i := range f32 {
		if got[i] != f32[i] {
			t.Errorf("f32[%d] = %v, want %v", i, got[i], f32[i])
		}
	}
	g64, _ := s.Float64s("a.f64")
	for i := range f64 {
		if g64[i] != f64[i] {
			t.Errorf("f64[%d] = %v, want %v", i, g64[i], f64[i])
		}
	}
	gi, _ := s.Int64s("ids")
	for i := range i64 {
		if gi[i] != i64[i] {
			t.Errorf("i64[%d] = %v, want %v", i, gi[i], i64[i])
		}
	}
	for name, want := range map[string][]float32{"half": {0.5, -1024}, "brain": {1.5, -3}, "scalar": {42}} {
		v, _, err := s.Float32s(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if v[i] != want[i] {
				t.Errorf("%s[%d] = %v, want %v", name, i, v[i], want[i])
			}
		}
	}
	gi32, _ := s.Int64s("i32")
	if gi32[0] != -1 || gi32[1] != 7 {
		t.Errorf("i32 = %v", gi32)
	}
	if s.files[0].Metadata["format"] != "pt" {
		t.Errorf("metadata lost: %v", s.files[0].Metadata)
	}
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data section not 8-byte aligned: header %d", n)
	}
}

func header(t *testing.T, h string, data int) []byte {
	t.Helper()
	b := make([]byte, 8+len(h)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	copy(b[8:], h)
	return b
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"short", "too short", []byte{1, 2, 3}},
		{"huge header", "exceeds the file", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 1<<40); return b }()},
		{"not json", "not valid JSON", header(t, "{nope", 0)},
		{"dtype", `unknown dtype "Q9"`, header(t, `{"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}`, 4)},
		{"truncated", "outside the 4 data bytes", header(t, `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4)},
		{"shape", "needs 12 bytes", header(t, `{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8)},
		{"overlap", "overlap", header(t, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8)},
		{"offsets", "2 numbers", header(t, `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, 4)},
		{"negative", "invalid shape", header(t, `{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.safetensors", c.b)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.safetensors") {
				t.Fatalf("err = %v, want it to name the file and say %q", err, c.want)
			}
		})
	}
}

func TestTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := Write(path, []Tensor{F32Tensor("w", []int{64}, make([]float32, 64))}, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, raw[:len(raw)-10], 0o644)
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Fatalf("err = %v, want an error naming tensor w", err)
	}
}

func TestRefusesPickle(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("x"), 0o644)
	_, err := OpenDir(dir)
	if err == nil || !strings.Contains(err.Error(), "safetensors") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Open(filepath.Join(dir, "pytorch_model.bin")); err == nil {
		t.Fatal("opened a pickle file")
	}
}

func TestShardedIndex(t *testing.T) {
	dir := t.TempDir()
	Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Tensor{F32Tensor("a", []int{1}, []float32{1})}, nil)
	Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{F32Tensor("b", []int{1}, []float32{2})}, nil)
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), 0o644)
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, want := range map[string]float32{"a": 1, "b": 2} {
		v, _, err := s.Float32s(name)
		if err != nil || v[0] != want {
			t.Errorf("%s = %v %v", name, v, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map":{"a":"../evil.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "leaves the model folder") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(header(&testing.T{}, `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8))
	f.Add(header(&testing.T{}, `{"__metadata__":{"a":"b"},"w":{"dtype":"BF16","shape":[1,1],"data_offsets":[0,2]}}`, 2))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		for _, n := range file.Names() {
			raw, info, err := file.Bytes(n)
			if err != nil {
				t.Fatal(err)
			}
			if info.DType == F32 || info.DType == F64 || info.DType == BF16 || info.DType == F16 {
				if _, err := Float32s(raw, info); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
