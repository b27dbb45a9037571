package tboard

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCRC32CAndMask(t *testing.T) {
	// The CRC-32C check value of the standard test string.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("crc32c = %08x", got)
	}
	// Event files TensorBoard writes begin with the record of the 24-byte
	// version event: length 0x18, then its masked CRC, bytes a3 7f 4b 22.
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], 24)
	if got := maskedCRC(n[:]); got != 0x224b7fa3 {
		t.Errorf("masked CRC of length 24 = %08x, want 224b7fa3", got)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.now = func() time.Time { return time.Unix(1700000000, 500000000) }
	names := []string{Tag("loss"), Tag("lr"), Tag("grad_norm"), Tag("tokens_per_s")}
	if err := w.Scalars(1, names, []float64{2.5, 1e-4, math.NaN(), 1234.5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Scalars(2, names, []float64{2.25, 2e-4, 3.5, 1300}); err != nil {
		t.Fatal(err)
	}
	if err := w.Scalars(2, []string{Tag("eval_loss")}, []float64{2.4}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(w.Path()), "events.out.tfevents.") {
		t.Errorf("file name %s", w.Path())
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22}) {
		t.Errorf("file starts % x, not as TensorBoard's files do", b[:12])
	}
	evs, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].FileVersion != FileVersion {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	want := []Value{{"train/loss", 2.5}, {"train/learning_rate", 1e-4}, {"train/tokens_per_second", 1234.5}}
	if e := evs[1]; e.Step != 1 || e.WallTime != 1700000000.5 || len(e.Values) != 3 {
		t.Fatalf("event 1: %+v", e)
	}
	for i, v := range want {
		if evs[1].Values[i] != v {
			t.Errorf("event 1 value %d = %+v, want %+v (the NaN grad norm left out)", i, evs[1].Values[i], v)
		}
	}
	if e := evs[3]; e.Step != 2 || len(e.Values) != 1 || e.Values[0] != (Value{"eval/loss", 2.4}) {
		t.Errorf("eval event: %+v", e)
	}
	// A corrupted byte is caught by the checksum.
	bad := append([]byte(nil), b...)
	bad[len(bad)-6] ^= 1
	if _, err := Read(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("corrupt record: %v", err)
	}
	// A record cut short (the writer is mid-write) ends the read quietly.
	if evs, err := Read(bytes.NewReader(b[:len(b)-3])); err != nil || len(evs) != 3 {
		t.Errorf("truncated file: %d events, %v", len(evs), err)
	}
}
