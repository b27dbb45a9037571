package train

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/optim"
)

// TestDeviceAdamW8bit: optim adamw_8bit on the reference backend and the
// CPU backend (full fine-tuning, so the large matrices keep 8-bit state and
// the norms float state): its losses stay within 2% of AdamW's with float
// moments over 12 steps; a run resumed from its checkpoint-4 logs exactly
// the uninterrupted run's losses; the device's peak memory is lower; and
// the two backends agree (to their products' rounding: the 8-bit update
// itself is bit-identical, compute/cpu's TestAdamW8bitMatchesReference).
func TestDeviceAdamW8bit(t *testing.T) {
	backends := []struct {
		name string
		open func() compute.Backend
	}{{"ref", func() compute.Backend { return ref.New() }}, {"host", func() compute.Backend { return cputest.Open() }}}
	var first []float64
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			method := []string{"--finetuning_type", "full", "--weight_decay", "0.01"}
			f32, f32Peak := runOnDevice(t, filepath.Join(t.TempDir(), "f32"), be.open(), method)
			dirA := filepath.Join(t.TempDir(), "q8")
			q8, q8Peak := runOnDevice(t, dirA, be.open(), append(method, "--optim", "adamw_8bit"))
			var worst float64
			for i := range f32 {
				worst = max(worst, math.Abs(q8[i]-f32[i])/f32[i])
			}
			t.Logf("12 steps: 8-bit vs float AdamW loss, worst relative difference %.3g (final %.6g vs %.6g); device peak %d vs %d bytes",
				worst, q8[len(q8)-1], f32[len(f32)-1], q8Peak, f32Peak)
			if worst > 0.02 {
				t.Errorf("8-bit AdamW's losses differ from AdamW's by up to %.3g (want ≤ 0.02)", worst)
			}
			if q8[len(q8)-1] >= q8[0] {
				t.Errorf("loss did not fall: %v", q8)
			}
			if q8Peak >= f32Peak {
				t.Errorf("device peak memory %d with 8-bit state, %d with float state", q8Peak, f32Peak)
			}

			// Resume from checkpoint-4: exactly the same losses after it.
			dirB := filepath.Join(t.TempDir(), "b")
			must(t, os.MkdirAll(dirB, 0o755))
			must(t, os.CopyFS(filepath.Join(dirB, "checkpoint-4"), os.DirFS(filepath.Join(dirA, "checkpoint-4"))))
			resumed, _ := runOnDevice(t, dirB, be.open(), append(method, "--optim", "adamw_8bit", "--resume_from_checkpoint", "true"))
			for i := 4; i < len(q8); i++ {
				if resumed[i] != q8[i] {
					t.Errorf("step %d: resumed loss %.17g, uninterrupted %.17g", i+1, resumed[i], q8[i])
				}
			}
			if first == nil {
				first = q8
			} else {
				for i := range q8 {
					if math.Abs(q8[i]-first[i]) > 1e-3*first[i] {
						t.Errorf("step %d: %s backend loss %.17g, reference backend %.17g", i+1, be.name, q8[i], first[i])
					}
				}
			}
		})
	}
}

// runOnDevice trains on be with the quick configuration and flags, and
// returns the logged losses and the device's peak memory.
func runOnDevice(t *testing.T, dir string, be compute.Backend, flags []string) ([]float64, int64) {
	t.Helper()
	cfg := quickConfig(t, dir)
	must(t, cfg.ApplyFlags(flags))
	var out strings.Builder
	tr, err := New(cfg, "", &out, Options{Backend: be})
	must(t, err)
	if tr.dev == nil {
		t.Fatalf("the run did not go to the device: %s", out.String())
	}
	must(t, tr.Run())
	peak := tr.dev.MemStats().Peak
	tr.Close()
	var losses []float64
	for _, e := range tr.state.LogHistory {
		losses = append(losses, e.Loss)
	}
	return losses, peak
}

// TestAdamW8bitNames: the three names bitsandbytes and transformers use
// all train with 8-bit state (paged_adamw_8bit says it needs no paging).
func TestAdamW8bitNames(t *testing.T) {
	for _, name := range []string{"adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"} {
		cfg := quickConfig(t, filepath.Join(t.TempDir(), name))
		must(t, cfg.ApplyFlags([]string{"--finetuning_type", "full", "--optim", name}))
		must(t, cfg.Validate())
		var out strings.Builder
		tr, err := New(cfg, "", &out, Options{Backend: cputest.Open()})
		must(t, err)
		if _, ok := tr.opt.(*optim.AdamW8bit); !ok {
			t.Errorf("%s: optimizer %T, want 8-bit AdamW", name, tr.opt)
		}
		if paged := strings.Contains(out.String(), "no paging needed"); paged != (name == "paged_adamw_8bit") {
			t.Errorf("%s: note about paging %v; output %q", name, paged, out.String())
		}
		tr.Close()
	}
}
