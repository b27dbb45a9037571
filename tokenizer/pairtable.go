package tokenizer

// pairTable maps a pair of token ids to its merge (rank and result). It is
// an open-addressing table: the merge loop does several lookups per merge
// and a plain map's generic probing costs noticeably more.
type pairTable struct {
	keys  []uint64 // pairKey | occupied; 0 marks an empty slot
	vals  []mergeVal
	mask  uint64
	shift uint
}

const occupied = 1 << 63

func newPairTable(n int) *pairTable {
	size, shift := 16, uint(60)
	for size < 2*n {
		size *= 2
		shift--
	}
	return &pairTable{keys: make([]uint64, size), vals: make([]mergeVal, size), mask: uint64(size - 1), shift: shift}
}

func (t *pairTable) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15) >> t.shift }

// put stores v unless the key is already present (the first merge wins).
func (t *pairTable) put(a, b int32, v mergeVal) bool {
	k := pairKey(a, b) | occupied
	for i := t.slot(k); ; i = (i + 1) & t.mask {
		switch t.keys[i] {
		case 0:
			t.keys[i], t.vals[i] = k, v
			return true
		case k:
			return false
		}
	}
}

func (t *pairTable) get(a, b int32) (mergeVal, bool) {
	k := pairKey(a, b) | occupied
	for i := t.slot(k); ; i = (i + 1) & t.mask {
		switch t.keys[i] {
		case k:
			return t.vals[i], true
		case 0:
			return mergeVal{}, false
		}
	}
}
