package data

import (
	"math"
	"strings"
)

const numPerm = 128

// minhashLSH finds near-duplicates by MinHash over word 3-gram shingles with
// banded locality-sensitive hashing; candidates that share a band are
// confirmed by estimating Jaccard similarity from the stored signatures.
// Signatures are kept as 4 bits per bin (b-bit MinHash, Li & König 2010):
// 64 bytes a record instead of 1 KB, at little cost in accuracy since the
// estimate corrects for the 1/16 chance of equal nibbles.
type minhashLSH struct {
	threshold float64
	bands     int
	rows      int
	// One table for all bands: each word is band key (32 bits, never 0)
	// << 32 | record id.
	table wordTable
	sigs  byteStore // numPerm/2 bytes (nibbles) per kept record
}

func newMinhashLSH(threshold float64) *minhashLSH {
	l := &minhashLSH{threshold: threshold}
	// Few bands, since memory is per band and record; as many rows per
	// band as keeps a pair at the threshold a candidate with probability
	// ≥ 0.98. Candidates are then confirmed on the whole signature.
	const bands = 6
	l.bands, l.rows = bands, 1
	for r := 2; r <= numPerm/bands; r++ {
		if 1-math.Pow(1-math.Pow(threshold, float64(r)), bands) < 0.98 {
			break
		}
		l.rows = r
	}
	return l
}

func splitmix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	z := x
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// signature is a one-permutation MinHash (Li, Owen & Zhang 2012): each
// shingle's hash picks one of numPerm bins by its top bits and competes for
// that bin's minimum with the rest, so a shingle costs O(1) instead of
// O(numPerm). Empty bins borrow the next non-empty bin's value, shifted by
// the distance (Shrivastava & Li's densification), which keeps the
// collision probability equal to the Jaccard similarity.
func (l *minhashLSH) signature(norm string) [numPerm]uint64 {
	var sig [numPerm]uint64
	for i := range sig {
		sig[i] = math.MaxUint64
	}
	const binBits = 7 // log2(numPerm)
	// A short text has fewer shingles than bins, and one-permutation
	// MinHash then rests on that few values: at 17 shingles, texts whose
	// Jaccard similarity is 0.7 (one word changed) were estimated at 0.8 or
	// more 17% of the time. Each shingle therefore enters as many copies
	// (tagged, so a copy is a distinct element) as it takes to fill the
	// bins; copying every element of both sets the same number of times
	// leaves their Jaccard similarity unchanged.
	reps := uint64(1)
	if n := countShingles(norm); n < numPerm {
		reps = uint64((numPerm + n - 1) / n)
	}
	add := func(s string) {
		h := uint64(14695981039346656037)
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		for r := uint64(0); r < reps; r++ {
			hr := splitmix(h + r*0x9E3779B97F4A7C15)
			bin, v := hr>>(64-binBits), hr&(1<<(64-binBits)-1)
			if v < sig[bin] {
				sig[bin] = v
			}
		}
	}
	// Word 3-gram shingles; a text shorter than that is one shingle.
	const k = 3
	var starts [k + 1]int // ring of the last word starts
	nwords := 0
	inWord := false
	for i := 0; i <= len(norm); i++ {
		if i == len(norm) || norm[i] == ' ' {
			if inWord && nwords >= k {
				add(norm[starts[(nwords-k)%(k+1)]:i])
			}
			inWord = false
		} else if !inWord {
			starts[nwords%(k+1)] = i
			nwords++
			inWord = true
		}
	}
	if nwords < k {
		add(norm)
	}
	// Densify: fill each empty bin from the next filled one, circularly.
	for i := range sig {
		if sig[i] != math.MaxUint64 {
			continue
		}
		for d := 1; d < numPerm; d++ {
			if v := sig[(i+d)%numPerm]; v != math.MaxUint64 && v < 1<<(64-binBits) {
				sig[i] = v + uint64(d)<<(64-binBits)
				break
			}
		}
	}
	return sig
}

// seenOrAdd reports whether norm is a near-duplicate of a text added before;
// if not, it is added.
func (l *minhashLSH) seenOrAdd(norm string) bool {
	sig := l.signature(norm)
	var small [numPerm / 2]byte
	for i := 0; i < numPerm; i += 2 {
		small[i/2] = byte(splitmix(sig[i]))&0x0F | byte(splitmix(sig[i+1]))<<4
	}
	var keys [numPerm]uint32
	for b := 0; b < l.bands; b++ {
		h := uint64(14695981039346656037) ^ uint64(b)
		for _, v := range sig[b*l.rows : (b+1)*l.rows] {
			h = (h ^ v) * 1099511628211
		}
		k := uint32(splitmix(h)>>32) | 1
		keys[b] = k
		if w, ok := l.table.find(splitmix(uint64(k)), func(w uint64) bool { return uint32(w>>32) == k }); ok && l.similar(small[:], uint32(w)) {
			return true
		}
	}
	id := uint32(l.sigs.n / (numPerm / 2))
	l.sigs.append(small[:])
	for _, k := range keys[:l.bands] {
		if _, ok := l.table.find(splitmix(uint64(k)), func(w uint64) bool { return uint32(w>>32) == k }); !ok {
			l.table.insert(splitmix(uint64(k)), uint64(k)<<32|uint64(id), func(w uint64) uint64 { return splitmix(w >> 32) })
		}
	}
	return false
}

func (l *minhashLSH) free() {
	l.table.free()
	l.sigs.free()
}

func (l *minhashLSH) similar(sig []byte, id uint32) bool {
	const n = numPerm / 2
	other := l.sigs.bytes()[int(id)*n : int(id+1)*n]
	eq := 0
	for i := range sig {
		x := sig[i] ^ other[i]
		if x&0x0F == 0 {
			eq++
		}
		if x&0xF0 == 0 {
			eq++
		}
	}
	// P(equal nibble) = J + (1-J)/16 → J = (p - 1/16) / (1 - 1/16)
	p := float64(eq) / numPerm
	j := (p - 1.0/16) / (1 - 1.0/16)
	return j >= l.threshold
}

// countShingles is the number of word 3-grams signature hashes (at least
// one: a shorter text is one shingle).
func countShingles(norm string) int {
	words := len(strings.Fields(norm))
	return max(words-2, 1)
}
