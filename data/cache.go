package data

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"gotune/safefile"
	"hash"
	"hash/crc32"
	"io"

	"math"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cache file layout (little-endian), designed to be memory-mapped:
//
//	0   magic "GTDCACHE"
//	8   version u32, flags u32 (bit 0: entries are chosen/rejected pairs)
//	16  entries u64  (token sequences; 2 per sample when paired)
//	24  tokens u64
//	32  train u64, 40 val u64 (sample counts of the two orders)
//	48  meta offset u64, 56 meta length u64
//	64  checksum u32: CRC-32C of bytes 72… then of bytes 0…63, 68 zero u32
//	72  tokens [tokens]u32: id | 1<<31 when the token is trained
//	    offsets [entries+1]u64 (8-aligned), sources [entries]u32
//	    (dataset index | 1<<31 for a KTO answer labelled undesirable),
//	    train [train]u32, val [val]u32, meta JSON (the Report)
const (
	cacheMagic = "GTDCACHE"
	// 2: checksum; 3: the report counts truncation; 4: KTO labels; 5: pairs
	// and KTO answers cut to cutoff_len as LLaMA-Factory cuts them
	cacheVersion   = 5
	undesirableBit = 1 << 31
	headerSize     = 72
	sumOffset      = 64
	trainedBit     = 1 << 31
)

// Cache is a prepared, tokenized dataset, memory-mapped read-only.
type Cache struct {
	path    string
	mm      []byte
	paired  bool
	tokens  []uint32
	offsets []uint64
	sources []uint32
	train   []uint32
	val     []uint32
	report  *Report
	maxID   int32 // largest token id, -1 when there are none
	content string
}

// cacheWriter streams samples into a temporary file next to the final one.
type cacheWriter struct {
	f       *os.File
	w       *bufio.Writer
	path    string
	paired  bool
	ntok    uint64
	offsets []uint64
	sources []uint32
	buf     []byte
	sum     hash.Hash32 // of everything after the header
}

func newCacheWriter(path string, paired bool) (*cacheWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(safefile.FilePerm()); err != nil { // CreateTemp made it 0600
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if _, err := f.Write(make([]byte, headerSize)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	sum := crc32.New(castagnoli)
	cw := &cacheWriter{f: f, w: bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20), path: path, paired: paired,
		offsets: []uint64{0}, sum: sum}
	return cw, nil
}

func (cw *cacheWriter) entry(ids, labels []int32, source int) error {
	cw.buf = cw.buf[:0]
	for i, id := range ids {
		v := uint32(id)
		if labels[i] != IgnoreIndex {
			v |= trainedBit
		}
		cw.buf = binary.LittleEndian.AppendUint32(cw.buf, v)
	}
	if _, err := cw.w.Write(cw.buf); err != nil {
		return err
	}
	cw.ntok += uint64(len(ids))
	cw.offsets = append(cw.offsets, cw.ntok)
	cw.sources = append(cw.sources, uint32(source))
	return nil
}

func (cw *cacheWriter) add(s Sample) error {
	for _, id := range s.InputIDs {
		if id < 0 {
			return fmt.Errorf("token id %d out of range", id)
		}
	}
	src := s.Source
	if s.Undesirable {
		src |= undesirableBit
	}
	if err := cw.entry(s.InputIDs, s.Labels, src); err != nil {
		return err
	}
	if cw.paired {
		return cw.entry(s.RejectedIDs, s.RejectedLabels, src)
	}
	return nil
}

func (cw *cacheWriter) samples() int {
	n := len(cw.sources)
	if cw.paired {
		n /= 2
	}
	return n
}

func (cw *cacheWriter) abort() {
	cw.f.Close()
	os.Remove(cw.f.Name())
}

// finish writes the tables and the header, syncs and renames into place.
func (cw *cacheWriter) finish(train, val []int, rep *Report) (err error) {
	defer func() {
		if err != nil {
			cw.abort()
		}
	}()
	w := cw.w
	pos := uint64(headerSize) + 4*cw.ntok
	if pad := (8 - pos%8) % 8; pad > 0 {
		w.Write(make([]byte, pad))
		pos += pad
	}
	var b []byte
	for _, o := range cw.offsets {
		b = binary.LittleEndian.AppendUint64(b, o)
	}
	for _, s := range cw.sources {
		b = binary.LittleEndian.AppendUint32(b, s)
	}
	for _, list := range [][]int{train, val} {
		for _, i := range list {
			b = binary.LittleEndian.AppendUint32(b, uint32(i))
		}
	}
	meta, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	metaOff := pos + uint64(len(b))
	b = append(b, meta...)
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	h := make([]byte, 0, headerSize)
	h = append(h, cacheMagic...)
	h = binary.LittleEndian.AppendUint32(h, cacheVersion)
	flags := uint32(0)
	if cw.paired {
		flags |= 1
	}
	h = binary.LittleEndian.AppendUint32(h, flags)
	for _, v := range []uint64{uint64(len(cw.sources)), cw.ntok, uint64(len(train)), uint64(len(val)), metaOff, uint64(len(meta))} {
		h = binary.LittleEndian.AppendUint64(h, v)
	}
	sum := crc32.Update(cw.sum.Sum32(), castagnoli, h)
	h = binary.LittleEndian.AppendUint32(h, sum)
	h = binary.LittleEndian.AppendUint32(h, 0)
	if _, err := cw.f.WriteAt(h, 0); err != nil {
		return err
	}
	if err := cw.f.Sync(); err != nil {
		return err
	}
	if err := cw.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(cw.f.Name(), cw.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(cw.path)); err == nil {
		d.Sync() // make the rename durable; not all filesystems support it
		d.Close()
	}
	return nil
}

// OpenCache memory-maps a cache file written by Prepare, checking every
// length in the header against the file size before use.
func OpenCache(path string) (*Cache, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < headerSize {
		return nil, fmt.Errorf("%s: not a gotune data cache (too short)", path)
	}
	mm, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	c, err := parseCache(path, mm)
	if err != nil {
		unix.Munmap(mm)
		return nil, err
	}
	return c, nil
}

func parseCache(path string, mm []byte) (*Cache, error) {
	bad := func(what string) error { return fmt.Errorf("%s: corrupt data cache: %s", path, what) }
	if string(mm[:8]) != cacheMagic {
		return nil, fmt.Errorf("%s: not a gotune data cache", path)
	}
	le := binary.LittleEndian
	if v := le.Uint32(mm[8:]); v != cacheVersion {
		return nil, fmt.Errorf("%s: cache version %d, expected %d", path, v, cacheVersion)
	}
	if !littleEndianHost() {
		return nil, fmt.Errorf("%s: memory-mapped caches need a little-endian machine", path)
	}
	flags := le.Uint32(mm[12:])
	nent, ntok, ntrain, nval := le.Uint64(mm[16:]), le.Uint64(mm[24:]), le.Uint64(mm[32:]), le.Uint64(mm[40:])
	metaOff, metaLen := le.Uint64(mm[48:]), le.Uint64(mm[56:])
	size := uint64(len(mm))
	const limit = math.MaxInt32
	if nent > limit || ntok > size/4 || ntrain > limit || nval > limit {
		return nil, bad("counts exceed the file")
	}
	pos := uint64(headerSize) + 4*ntok
	pos += (8 - pos%8) % 8
	need := pos + 8*(nent+1) + 4*nent + 4*(ntrain+nval)
	if need > size || metaOff != need || metaOff+metaLen != size {
		return nil, bad("section sizes do not match the file size")
	}
	// A flipped bit in a token would otherwise train on a wrong (or
	// out-of-vocabulary) id without a word.
	content := crc32.Checksum(mm[headerSize:metaOff], castagnoli)
	want := le.Uint32(mm[sumOffset:])
	if got := crc32.Update(crc32.Update(content, castagnoli, mm[metaOff:]), castagnoli, mm[:sumOffset]); got != want {
		return nil, fmt.Errorf("%s: corrupt data cache: checksum %08x, expected %08x (delete the file to rebuild it)", path, got, want)
	}
	c := &Cache{path: path, mm: mm, paired: flags&1 != 0, content: fmt.Sprintf("%08x-%d-%d", content, ntok, nent)}
	c.tokens = unsafe.Slice((*uint32)(unsafe.Pointer(&mm[headerSize])), ntok)
	c.offsets = unsafe.Slice((*uint64)(unsafe.Pointer(&mm[pos])), nent+1)
	pos += 8 * (nent + 1)
	c.sources = unsafe.Slice((*uint32)(unsafe.Pointer(&mm[pos])), nent)
	pos += 4 * nent
	c.train = unsafe.Slice((*uint32)(unsafe.Pointer(&mm[pos])), ntrain)
	pos += 4 * ntrain
	c.val = unsafe.Slice((*uint32)(unsafe.Pointer(&mm[pos])), nval)
	if ntok == 0 {
		c.tokens = nil
	}
	prev := uint64(0)
	for _, o := range c.offsets {
		if o < prev || o > ntok {
			return nil, bad("sample offsets out of order")
		}
		prev = o
	}
	if c.offsets[0] != 0 || c.offsets[nent] != ntok {
		return nil, bad("sample offsets do not cover the tokens")
	}
	ns := uint32(c.Len())
	for _, list := range [][]uint32{c.train, c.val} {
		for _, i := range list {
			if i >= ns {
				return nil, bad("order index out of range")
			}
		}
	}
	c.maxID = -1
	for _, v := range c.tokens {
		c.maxID = max(c.maxID, int32(v&^trainedBit))
	}
	c.report = &Report{}
	if err := json.Unmarshal(mm[metaOff:], c.report); err != nil {
		return nil, bad("report: " + err.Error())
	}
	return c, nil
}

func littleEndianHost() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// Close unmaps the file; slices returned before must not be used after.
func (c *Cache) Close() error {
	if c.mm == nil {
		return nil
	}
	err := unix.Munmap(c.mm)
	c.mm, c.tokens = nil, nil
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxTokenID is the largest token id in the cache (-1 when it holds none),
// for checking against the model's embedding table before training.
func (c *Cache) MaxTokenID() int { return int(c.maxID) }

// ContentSum identifies the prepared samples (tokens, trained marks, the
// train and validation orders) independently of where the files lie, so a
// resume can tell whether it trains on the same data.
func (c *Cache) ContentSum() string { return c.content }

// Path is the cache file.
func (c *Cache) Path() string { return c.path }

// Paired reports whether samples are preference pairs.
func (c *Cache) Paired() bool { return c.paired }

// Len is the number of samples.
func (c *Cache) Len() int {
	if c.paired {
		return (len(c.offsets) - 1) / 2
	}
	return len(c.offsets) - 1
}

func (c *Cache) entry(e int) (ids, labels []int32) {
	raw := c.tokens[c.offsets[e]:c.offsets[e+1]]
	ids = make([]int32, len(raw))
	labels = make([]int32, len(raw))
	for i, v := range raw {
		ids[i] = int32(v &^ trainedBit)
		labels[i] = IgnoreIndex
		if v&trainedBit != 0 {
			labels[i] = ids[i]
		}
	}
	return ids, labels
}

func (c *Cache) idx(i int) int {
	if c.paired {
		return 2 * i
	}
	return i
}

// SeqLen is sample i's length in tokens (the chosen answer for pairs).
func (c *Cache) SeqLen(i int) int {
	e := c.idx(i)
	return int(c.offsets[e+1] - c.offsets[e])
}

// Tokens returns sample i (the chosen side for pairs) as fresh slices.
func (c *Cache) Tokens(i int) (ids, labels []int32) { return c.entry(c.idx(i)) }

// Sample returns sample i in full, rejected side included for pairs.
func (c *Cache) Sample(i int) Sample {
	e := c.idx(i)
	s := Sample{Source: int(c.sources[e] &^ undesirableBit), Undesirable: c.sources[e]&undesirableBit != 0}
	s.InputIDs, s.Labels = c.entry(e)
	if c.paired {
		s.RejectedIDs, s.RejectedLabels = c.entry(e + 1)
	}
	return s
}

// Undesirable reports whether sample i is a KTO answer labelled bad.
func (c *Cache) Undesirable(i int) bool { return c.sources[c.idx(i)]&undesirableBit != 0 }

// Train and Val are the mixed, shuffled sample orders.
func (c *Cache) Train() []int { return toInts(c.train) }
func (c *Cache) Val() []int   { return toInts(c.val) }

// Report is the inspection report computed while preparing.
func (c *Cache) Report() *Report { return c.report }

func toInts(u []uint32) []int {
	out := make([]int, len(u))
	for i, v := range u {
		out[i] = int(v)
	}
	return out
}

var errStop = errors.New("stop")
