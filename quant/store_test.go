package quant

import (
	"slices"
	"strings"
	"testing"

	"gotune/dtype"
	"gotune/nn"
)

// TestStore converts a weight between every pair of forms: the result has
// the asked form and the layer's shape, holds the values a direct
// conversion gives (quantizing a bf16 source reads its bits, not a second
// rounding), and a weight already in the form comes back as it is.
func TestStore(t *testing.T) {
	const out, in = 12, 64
	w := normals(3, out*in, 0.05)
	bits := make([]uint16, len(w))
	dtype.F32ToBF16(bits, w)
	widened := make([]float32, len(w))
	dtype.BF16ToF32(widened, bits)
	sources := map[string]func() nn.Weight{
		"f32":  func() nn.Weight { return &nn.Param{Shape: []int{out, in}, Data: slices.Clone(w)} },
		"bf16": func() nn.Weight { return &nn.BF16{Out: out, In: in, Data: slices.Clone(bits)} },
		"nf4":  func() nn.Weight { return mustQuantize(t, w, out, in, Options{Type: NF4}) },
	}
	// What each source holds as float32: the values every target is made of.
	held := map[string][]float32{"f32": w, "bf16": widened, "nf4": make([]float32, len(w))}
	sources["nf4"]().Dense(held["nf4"])
	for _, src := range []string{"f32", "bf16", "nf4"} {
		for _, to := range []Options{{Type: F32}, {}, {Type: BF16}, {Type: NF4}, {Type: NF4, DoubleQuant: true}, {Type: FP4}, {Type: Int8Row}, {Type: Int8Block}} {
			t.Run(src+"-to-"+to.Type.String(), func(t *testing.T) {
				sw := sources[src]()
				got, err := to.Store(sw)
				if err != nil {
					t.Fatal(err)
				}
				if o, i := got.Dims(); o != out || i != in {
					t.Fatalf("dims %d×%d, want %d×%d", o, i, out, in)
				}
				var want []float32
				switch to.Type {
				case 0, F32:
					if _, ok := got.(*nn.Param); !ok {
						t.Fatalf("got %T, want *nn.Param", got)
					}
					want = held[src]
				case BF16:
					if _, ok := got.(*nn.BF16); !ok {
						t.Fatalf("got %T, want *nn.BF16", got)
					}
					want = make([]float32, len(w))
					b := make([]uint16, len(w))
					dtype.F32ToBF16(b, held[src])
					dtype.BF16ToF32(want, b)
				default:
					m, ok := got.(*Matrix)
					if !ok || m.Type() != to.Type || m.DoubleQuant() != to.DoubleQuant {
						t.Fatalf("got %T (%v), want a %v matrix (double %v)", got, got, to.Type, to.DoubleQuant)
					}
					var d *Matrix
					if src == "bf16" {
						if d, err = QuantizeBF16(bits, out, in, to); err != nil {
							t.Fatal(err)
						}
					} else {
						d = mustQuantize(t, held[src], out, in, to)
					}
					want = make([]float32, len(w))
					d.Dense(want)
				}
				dense := make([]float32, len(w))
				got.Dense(dense)
				if !slices.Equal(dense, want) {
					t.Errorf("values differ from a direct conversion")
				}
				same := (src == "f32" && (to.Type == F32 || to.Type == 0)) || (src == "bf16" && to.Type == BF16) || (src == "nf4" && to.Type == NF4 && !to.DoubleQuant)
				if same != (got == sw) {
					t.Errorf("returned the source itself: %v, want %v", got == sw, same)
				}
			})
		}
	}
}

// TestStoreLinear: a layer takes only a weight of its shape, and a float32
// weight gets the layer's parameter name.
func TestStoreLinear(t *testing.T) {
	l := &nn.Linear{Name: "model.layers.0.mlp.up_proj", Out: 4, In: 8}
	if err := l.SetWeight(&nn.BF16{Out: 8, In: 4, Data: make([]uint16, 32)}); err == nil || !strings.Contains(err.Error(), "up_proj") {
		t.Fatalf("a transposed weight: err %v, want one naming the layer", err)
	}
	l.W = &nn.BF16{Out: 4, In: 8, Data: make([]uint16, 32)}
	if err := (Options{Type: F32}).StoreLinear(l); err != nil {
		t.Fatal(err)
	}
	if p := l.F32(); p == nil || p.Name != "model.layers.0.mlp.up_proj.weight" || l.W.Bytes() != 4*32 {
		t.Fatalf("after storing as f32: %T %+v", l.W, l.F32())
	}
	if err := (Options{Type: NF4, BlockSize: 3}).StoreLinear(l); err == nil || !strings.Contains(err.Error(), "up_proj") {
		t.Fatalf("an odd 4-bit block size: err %v, want one naming the layer", err)
	}
}
