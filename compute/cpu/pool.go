package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Worker goroutines compute the parts of parallel jobs (matrix products,
// Parallel, RunWorkers). A training step hands them thousands of parts, most
// of them well under a millisecond, separated by short serial stretches
// (norms, residual adds). A worker that parked on a channel after its part
// must be woken through the OS — on a virtual machine an interrupt to a
// halted vCPU, tens of microseconds — and the caller waits that long for its
// part: measured on the LoRA step of smollm2-135m, 2 vCPUs averaged 1.7 busy
// cores with parked workers. So a worker first spins for spinFor, yielding to
// any other goroutine, and only then parks.
const spinFor = 100 * time.Microsecond

// task is one part of a job.
type task struct {
	job    parter
	split  bool
	lo, hi int
}

// parter is a job split into parts, each computed by one goroutine.
type parter interface {
	part(split bool, lo, hi int)
	group() *sync.WaitGroup
}

// Worker states: busy (computing, or claimed by a dispatcher that is about
// to hand it a task), spinning (free, polling for a task) and parked (free,
// blocked on wake).
const (
	workerBusy int32 = iota
	workerSpinning
	workerParked
)

type poolWorker struct {
	state atomic.Int32
	ready atomic.Bool // t holds a task not yet taken
	t     task
	wake  chan struct{}
}

// workers lists every worker ever started; it only grows, up to the most
// parts ever in flight at once.
var workers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*poolWorker]
}

// dispatch hands t to a free worker, preferring one that is spinning, or
// starts a new one.
func dispatch(t task) {
	if ws := workers.list.Load(); ws != nil {
		for _, want := range []int32{workerSpinning, workerParked} {
			for _, w := range *ws {
				if w.state.CompareAndSwap(want, workerBusy) {
					w.t = t
					w.ready.Store(true)
					if want == workerParked {
						w.wake <- struct{}{}
					}
					return
				}
			}
		}
	}
	w := &poolWorker{wake: make(chan struct{}, 1), t: t}
	w.ready.Store(true)
	workers.mu.Lock()
	var list []*poolWorker
	if ws := workers.list.Load(); ws != nil {
		list = append(list, *ws...)
	}
	list = append(list, w)
	workers.list.Store(&list)
	workers.mu.Unlock()
	go w.loop()
}

func (w *poolWorker) loop() {
	for {
		for !w.ready.Load() {
			runtime.Gosched() // claimed; the task is on its way
		}
		t := w.t
		w.t = task{}
		w.ready.Store(false)
		t.job.part(t.split, t.lo, t.hi)
		t.job.group().Done()
		w.state.Store(workerSpinning)
		if w.spin() {
			continue
		}
		if w.state.CompareAndSwap(workerSpinning, workerParked) {
			<-w.wake
		}
		// Otherwise a dispatcher claimed this worker as it stopped spinning.
	}
}

// spin polls for a task for up to spinFor and reports whether one came.
func (w *poolWorker) spin() bool {
	start := time.Now()
	for i := 1; ; i++ {
		if w.ready.Load() {
			return true
		}
		if i%64 == 0 {
			if time.Since(start) > spinFor {
				return false
			}
			runtime.Gosched()
		}
	}
}

// runParts cuts units into threads near-equal ranges, hands all but the last
// to workers, computes the last itself and waits for the rest.
func runParts(j parter, split bool, units, threads int) {
	wg := j.group()
	lo := 0
	for t := range threads {
		hi := lo + units/threads
		if t < units%threads {
			hi++
		}
		if t == threads-1 {
			j.part(split, lo, hi)
			break
		}
		wg.Add(1)
		dispatch(task{job: j, split: split, lo: lo, hi: hi})
		lo = hi
	}
	wg.Wait()
}

// fnJob runs fn(w) as part w.
type fnJob struct {
	fn func(w int)
	wg sync.WaitGroup
}

func (j *fnJob) part(_ bool, lo, _ int) { j.fn(lo) }
func (j *fnJob) group() *sync.WaitGroup { return &j.wg }

// RunWorkers calls fn(w) for every w in [0, n) at the same time, fn(0) on the
// calling goroutine and the others on the worker goroutines, and returns when
// all have returned.
func RunWorkers(n int, fn func(w int)) {
	if n <= 1 {
		fn(0)
		return
	}
	j := &fnJob{fn: fn}
	j.wg.Add(n - 1)
	for w := 1; w < n; w++ {
		dispatch(task{job: j, lo: w})
	}
	fn(0)
	j.wg.Wait()
}
