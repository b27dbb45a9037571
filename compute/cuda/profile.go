//go:build linux && (amd64 || arm64)

package cuda

import (
	"sort"
	"unsafe"
)

type profEvent struct {
	op         string
	start, end uintptr
}

// StartProfile begins timing every operation with CUDA events (recorded on
// the stream around each launch, so the GPU is not synchronised per op).
func (d *Device) StartProfile() {
	d.profiling = true
	d.pending = d.pending[:0]
}

// StopProfile waits for the GPU and returns the time per kind of operation,
// largest first.
func (d *Device) StopProfile() []OpTime {
	d.profiling = false
	d.Sync()
	defer d.bind()()
	agg := map[string]*OpTime{}
	for _, e := range d.pending {
		var ms float32
		d.drv.cuEventElapsedTime.call(uintptr(unsafe.Pointer(&ms)), e.start, e.end)
		t := agg[e.op]
		if t == nil {
			t = &OpTime{Op: e.op}
			agg[e.op] = t
		}
		t.Calls++
		t.MS += float64(ms)
		d.eventPool = append(d.eventPool, e.start, e.end)
	}
	d.pending = d.pending[:0]
	out := make([]OpTime, 0, len(agg))
	for _, t := range agg {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
	return out
}

func (d *Device) event() uintptr {
	if n := len(d.eventPool); n > 0 {
		e := d.eventPool[n-1]
		d.eventPool = d.eventPool[:n-1]
		return e
	}
	var e uintptr
	d.fail(d.drv.check("cuEventCreate", d.drv.cuEventCreate.call(uintptr(unsafe.Pointer(&e)), 0)))
	return e
}

// mark records the start of an operation when profiling; the returned
// function records its end.
func (d *Device) mark(op string) func() {
	if !d.profiling {
		return func() {}
	}
	defer d.bind()()
	start := d.event()
	d.drv.cuEventRecord.call(start, d.stream)
	return func() {
		defer d.bind()()
		end := d.event()
		d.drv.cuEventRecord.call(end, d.stream)
		d.pending = append(d.pending, profEvent{op: op, start: start, end: end})
	}
}

func gemmOp(m, n, k int) string {
	if min(m, n, k) <= 64 {
		return "gemm_thin"
	}
	return "gemm"
}
