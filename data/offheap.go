package data

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The duplicate detectors keep a few bytes per record for the whole run.
// On the Go heap that memory also doubles the garbage collector's target,
// so a 1 GB file would need twice the RSS; they live in anonymous mappings
// instead (pointer-free data, freed explicitly).

func allocWords(n int) []uint64 {
	if n == 0 {
		return nil
	}
	b, err := unix.Mmap(-1, 0, n*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n) // zeroed too; the GC frees it
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n)
}

func freeWords(s []uint64) {
	if cap(s) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[:1][0])), cap(s)*8)
	_ = unix.Munmap(b) // fails harmlessly for the heap fallback
}

// wordTable is an open-addressing hash table of non-zero uint64 slots; the
// caller packs key and value into the word and compares with match.
type wordTable struct {
	slots []uint64
	n     int
}

func (t *wordTable) find(h uint64, match func(uint64) bool) (uint64, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return 0, false
		}
		if match(v) {
			return v, true
		}
	}
}

// insert adds word v (non-zero) at hash h, growing at 3/4 load.
func (t *wordTable) insert(h, v uint64, rehash func(uint64) uint64) {
	if (t.n+1)*4 > len(t.slots)*3 {
		old := t.slots
		t.slots = allocWords(max(1024, 2*len(old)))
		t.n = 0
		for _, w := range old {
			if w != 0 {
				t.put(rehash(w), w)
			}
		}
		freeWords(old)
	}
	t.put(h, v)
}

func (t *wordTable) put(h, v uint64) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = v
	t.n++
}

func (t *wordTable) free() {
	freeWords(t.slots)
	t.slots, t.n = nil, 0
}

// byteStore is an append-only byte array off the Go heap.
type byteStore struct {
	words []uint64
	n     int
}

func (s *byteStore) bytes() []byte {
	if len(s.words) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s.words[0])), len(s.words)*8)[:s.n]
}

func (s *byteStore) append(p []byte) {
	if s.n+len(p) > len(s.words)*8 {
		grown := allocWords(max(1<<16, 2*len(s.words), (s.n+len(p)+7)/8))
		if s.n > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&grown[0])), len(grown)*8), s.bytes())
		}
		freeWords(s.words)
		s.words = grown
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&s.words[0])), len(s.words)*8)[s.n:], p)
	s.n += len(p)
}

func (s *byteStore) free() {
	freeWords(s.words)
	s.words, s.n = nil, 0
}
