package optim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// StateFile is the optimizer state's file name inside a checkpoint. The file
// is a safetensors file (readable by the Python safetensors package): for
// every parameter "<name>.exp_avg", "<name>.exp_avg_sq", "<name>.step"
// (AdamW) or "<name>.momentum_buffer" (SGD).
const StateFile = "optimizer.safetensors"

const stateFormat = "gotune.optim/1"

// stateful is implemented by the optimizers for Save and Load.
type stateful interface {
	// stateTensors lists the state to save.
	stateTensors() []tensor
	// stateTarget returns where a saved tensor goes, allocating state as
	// needed; ok is false for a name the optimizer does not know.
	stateTarget(name string) (t tensor, ok bool)
	// stateMissing reports trainable parameters whose state the load did
	// not provide, given the names it did.
	stateMissing(loaded map[string]bool) []string
}

// tensor is one state buffer; exactly one of f32, f64, i64, u8 is set.
type tensor struct {
	name  string
	shape []int
	f32   []float32
	f64   []float64
	i64   []int64
	u8    []byte // 8-bit optimizer codes
}

func (t tensor) dtype() string {
	switch {
	case t.f64 != nil:
		return "F64"
	case t.i64 != nil:
		return "I64"
	case t.u8 != nil:
		return "U8"
	}
	return "F32"
}

func (t tensor) elems() int { return max(len(t.f32), len(t.f64), len(t.i64), len(t.u8)) }

func dtypeSize(d string) int {
	switch d {
	case "F32":
		return 4
	case "U8":
		return 1
	}
	return 8
}

// Save writes the optimizer's state to w.
func Save(o Optimizer, w io.Writer) error {
	ts := o.stateTensors()
	header := map[string]any{"__metadata__": map[string]string{"format": stateFormat, "optimizer": o.Name()}}
	off := 0
	for _, t := range ts {
		n := t.elems() * dtypeSize(t.dtype())
		header[t.name] = map[string]any{"dtype": t.dtype(), "shape": t.shape, "data_offsets": [2]int{off, off + n}}
		off += n
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("save optimizer state: %w", err)
	}
	for len(hb)%8 != 0 { // safetensors aligns the data section
		hb = append(hb, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(hb)))
	bw.Write(lenb[:])
	bw.Write(hb)
	buf := make([]byte, 0, 1<<16)
	for _, t := range ts {
		for i := 0; i < t.elems(); {
			buf = buf[:0]
			for ; i < t.elems() && len(buf)+8 <= cap(buf); i++ {
				switch {
				case t.f32 != nil:
					buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(t.f32[i]))
				case t.f64 != nil:
					buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(t.f64[i]))
				case t.u8 != nil:
					buf = append(buf, t.u8[i])
				default:
					buf = binary.LittleEndian.AppendUint64(buf, uint64(t.i64[i]))
				}
			}
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("save optimizer state: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save optimizer state: %w", err)
	}
	return nil
}

// SaveFile writes the optimizer's state to path (normally inside a
// checkpoint directory being written by ckpt.WriteDir, which makes it atomic).
func SaveFile(o Optimizer, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("save optimizer state: %w", err)
	}
	if err := Save(o, f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save optimizer state %s: %w", path, err)
	}
	return f.Close()
}

// LoadFile restores state saved by SaveFile.
func LoadFile(o Optimizer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load optimizer state: %w", err)
	}
	defer f.Close()
	return Load(o, f, path)
}

type headerEntry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// Load restores state saved by Save into an optimizer built over parameters
// with the same names and shapes. name (a file name) is used in errors. After
// an error the optimizer's state is unspecified: build a fresh one.
func Load(o Optimizer, r io.Reader, name string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("load optimizer state %s: %s", name, fmt.Sprintf(format, args...))
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var lenb [8]byte
	if _, err := io.ReadFull(br, lenb[:]); err != nil {
		return fail("reading header length: %v", err)
	}
	hlen := binary.LittleEndian.Uint64(lenb[:])
	if hlen > 100<<20 {
		return fail("header length %d is not plausible (limit 100 MiB): not a safetensors file", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(br, hb); err != nil {
		return fail("reading %d-byte header: %v", hlen, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return fail("header is not JSON: %v", err)
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return fail("__metadata__: %v", err)
		}
		delete(raw, "__metadata__")
	}
	if meta["format"] != stateFormat {
		return fail("format %q; want %q (not a gotune optimizer state)", meta["format"], stateFormat)
	}
	if meta["optimizer"] != o.Name() {
		return fail("state of optimizer %q cannot be loaded into %q", meta["optimizer"], o.Name())
	}
	type item struct {
		name string
		headerEntry
	}
	items := make([]item, 0, len(raw))
	for k, v := range raw {
		var e headerEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fail("tensor %q: %v", k, err)
		}
		items = append(items, item{k, e})
	}
	slices.SortFunc(items, func(a, b item) int { return a.Offsets[0] - b.Offsets[0] })

	loaded := map[string]bool{}
	pos := 0
	chunk := make([]byte, 1<<16)
	for _, it := range items {
		if it.DType != "F32" && it.DType != "F64" && it.DType != "I64" && it.DType != "U8" {
			return fail("tensor %q: dtype %q; want F32, F64, I64 or U8", it.name, it.DType)
		}
		n := 1
		for _, d := range it.Shape {
			if d < 0 || (d > 0 && n > math.MaxInt32/d) {
				return fail("tensor %q: shape %v is not plausible", it.name, it.Shape)
			}
			n *= d
		}
		size := dtypeSize(it.DType)
		if it.Offsets[0] != pos || it.Offsets[1]-it.Offsets[0] != n*size {
			return fail("tensor %q: data_offsets %v; want [%d %d] for %s %v packed after the previous tensor",
				it.name, it.Offsets, pos, pos+n*size, it.DType, it.Shape)
		}
		dst, ok := o.stateTarget(it.name)
		if !ok {
			return fail("tensor %q belongs to no parameter being trained (did the model, finetuning_type or lora_target change?)", it.name)
		}
		if !slices.Equal(dst.shape, it.Shape) {
			return fail("tensor %q: shape %v; the parameter needs %v", it.name, it.Shape, dst.shape)
		}
		if (dst.i64 != nil) != (it.DType == "I64") || (dst.u8 != nil) != (it.DType == "U8") {
			return fail("tensor %q: dtype %s; want %s", it.name, it.DType, dst.dtype())
		}
		for i := 0; i < n; {
			k := min(n-i, len(chunk)/size)
			b := chunk[:k*size]
			if _, err := io.ReadFull(br, b); err != nil {
				return fail("tensor %q: reading data: %v", it.name, err)
			}
			for j := range k {
				var v float64
				switch it.DType {
				case "F32":
					v = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:])))
				case "F64":
					v = math.Float64frombits(binary.LittleEndian.Uint64(b[8*j:]))
				case "I64":
					dst.i64[i+j] = int64(binary.LittleEndian.Uint64(b[8*j:]))
					continue
				case "U8":
					dst.u8[i+j] = b[j]
					continue
				}
				if dst.f32 != nil {
					dst.f32[i+j] = float32(v)
				} else {
					dst.f64[i+j] = v
				}
			}
			i += k
		}
		pos += n * size
		loaded[it.name] = true
	}
	// A state saved before the first update holds nothing; anything else
	// must cover every trainable parameter.
	if missing := o.stateMissing(loaded); len(missing) > 0 && len(loaded) > 0 {
		return fail("no state for %d trainable parameter(s), e.g. %s", len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
	}
	return nil
}

// splitStateName splits "<param>.<field>" at the last dot.
func splitStateName(s string) (param, field string) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

func (ps *params) slotByName(name string) int {
	for i, s := range ps.slots {
		if s.p.Name == name {
			return i
		}
	}
	return -1
}

func shapeOf(n int, shape []int) []int {
	if len(shape) == 0 {
		return []int{n}
	}
	return shape
}

// AdamW state.

func (o *AdamW) stateTensors() []tensor {
	var ts []tensor
	for i, s := range o.slots {
		if o.steps[i] == 0 {
			continue
		}
		shape := shapeOf(len(s.p.Data), s.p.Shape)
		m, v := tensor{name: s.p.Name + ".exp_avg", shape: shape}, tensor{name: s.p.Name + ".exp_avg_sq", shape: shape}
		if o.cfg.Float64State {
			m.f64, v.f64 = o.m64[i], o.v64[i]
		} else {
			m.f32, v.f32 = o.m32[i], o.v32[i]
		}
		ts = append(ts, m, v, tensor{name: s.p.Name + ".step", shape: []int{}, i64: o.steps[i : i+1]})
	}
	return ts
}

func (o *AdamW) stateTarget(name string) (tensor, bool) {
	pname, field := splitStateName(name)
	i := o.slotByName(pname)
	if i < 0 {
		return tensor{}, false
	}
	p := o.slots[i].p
	shape := shapeOf(len(p.Data), p.Shape)
	o.ensureState(i)
	t := tensor{name: name, shape: shape}
	switch field {
	case "exp_avg":
		t.f32, t.f64 = pick32(o.m32, i), pick64(o.m64, i)
	case "exp_avg_sq":
		t.f32, t.f64 = pick32(o.v32, i), pick64(o.v64, i)
	case "step":
		return tensor{name: name, shape: []int{}, i64: o.steps[i : i+1]}, true
	default:
		return tensor{}, false
	}
	return t, true
}

func (o *AdamW) stateMissing(loaded map[string]bool) []string {
	var out []string
	for i, s := range o.slots {
		has := loaded[s.p.Name+".exp_avg"] && loaded[s.p.Name+".exp_avg_sq"] && loaded[s.p.Name+".step"]
		if !has && (s.p.Grad != nil || loaded[s.p.Name+".step"]) {
			out = append(out, s.p.Name)
		}
		if !has {
			// A parameter without saved state starts fresh, as in torch.
			o.steps[i] = 0
			clear(pick32(o.m32, i))
			clear(pick32(o.v32, i))
			clear(pick64(o.m64, i))
			clear(pick64(o.v64, i))
		}
	}
	return out
}

func pick32(s [][]float32, i int) []float32 {
	if s == nil {
		return nil
	}
	return s[i]
}

func pick64(s [][]float64, i int) []float64 {
	if s == nil {
		return nil
	}
	return s[i]
}

// SGD state.

func (o *SGD) stateTensors() []tensor {
	var ts []tensor
	for i, s := range o.slots {
		if o.seeded[i] {
			ts = append(ts, tensor{name: s.p.Name + ".momentum_buffer", shape: shapeOf(len(s.p.Data), s.p.Shape), f32: o.buf[i]})
		}
	}
	return ts
}

func (o *SGD) stateTarget(name string) (tensor, bool) {
	pname, field := splitStateName(name)
	i := o.slotByName(pname)
	if i < 0 || field != "momentum_buffer" {
		return tensor{}, false
	}
	p := o.slots[i].p
	if o.buf[i] == nil {
		o.buf[i] = make([]float32, len(p.Data))
	}
	o.seeded[i] = true
	return tensor{name: name, shape: shapeOf(len(p.Data), p.Shape), f32: o.buf[i]}, true
}

func (o *SGD) stateMissing(loaded map[string]bool) []string {
	var out []string
	for i, s := range o.slots {
		if loaded[s.p.Name+".momentum_buffer"] {
			continue
		}
		o.seeded[i] = false
		if s.p.Grad != nil && o.cfg.Momentum != 0 {
			out = append(out, s.p.Name)
		}
	}
	return out
}
