// Package tboard writes TensorBoard event files (`report_to: tensorboard`)
// and reads them back.
//
// An event file is a sequence of TFRecords: a little-endian uint64 length,
// the masked CRC-32C of those 8 bytes, the payload, and the masked CRC-32C
// of the payload. Each payload is an Event protocol buffer; the first
// carries file_version "brain.Event:2", the others a Summary of scalar
// values (tag, simple_value) at a step. The protocol buffers are encoded
// here by hand: three small messages do not justify a code generator.
package tboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is the TFRecord checksum: CRC-32C rotated right by 15 bits
// plus a constant, so that a CRC stored inside checksummed data does not
// checksum to something trivial.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Value is one scalar of an event.
type Value struct {
	Tag   string
	Value float32
}

// Event is a decoded event record.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Values      []Value
}

// protobuf wire types
const (
	wireVarint = 0
	wire64     = 1
	wireBytes  = 2
	wire32     = 5
)

func appendKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func appendBytes(b []byte, field int, p []byte) []byte {
	b = appendKey(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// marshal encodes an Event message: wall_time = 1 (double), step = 2
// (int64), file_version = 3 (string), summary = 5 (Summary); Summary has
// repeated value = 1 (Value); Value has tag = 1 (string), simple_value =
// 2 (float).
func (e Event) marshal() []byte {
	b := appendKey(nil, 1, wire64)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.WallTime))
	if e.Step != 0 {
		b = appendKey(b, 2, wireVarint)
		b = binary.AppendUvarint(b, uint64(e.Step))
	}
	if e.FileVersion != "" {
		b = appendBytes(b, 3, []byte(e.FileVersion))
	}
	if len(e.Values) > 0 {
		var sum []byte
		for _, v := range e.Values {
			val := appendBytes(nil, 1, []byte(v.Tag))
			val = appendKey(val, 2, wire32)
			val = binary.LittleEndian.AppendUint32(val, math.Float32bits(v.Value))
			sum = appendBytes(sum, 1, val)
		}
		b = appendBytes(b, 5, sum)
	}
	return b
}

// Writer appends events to one event file. Its methods are safe for
// concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	path string
	now  func() time.Time
}

// FileVersion is the version record TensorBoard expects first.
const FileVersion = "brain.Event:2"

// Create starts a new event file in dir, named as TensorBoard's writers
// name theirs so that its directory watcher picks it up.
func Create(dir string) (*Writer, error) {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	now := time.Now()
	name := fmt.Sprintf("events.out.tfevents.%d.%s.%d.0", now.Unix(), host, os.Getpid())
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	w := &Writer{f: f, w: bufio.NewWriter(f), path: p, now: time.Now}
	if err := w.write(Event{WallTime: unixSeconds(now), FileVersion: FileVersion}); err != nil {
		f.Close()
		return nil, err
	}
	return w, w.Flush()
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (w *Writer) write(e Event) error {
	data := e.marshal()
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], maskedCRC(head[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskedCRC(data))
	for _, p := range [][]byte{head[:], data, tail[:]} {
		if _, err := w.w.Write(p); err != nil {
			return fmt.Errorf("tensorboard: %w", err)
		}
	}
	return nil
}

// Scalars records values at a step; names and values pair up. Values that
// are not finite (a step without a loss) are left out, as TensorBoard
// would draw them as gaps anyway. The record is flushed to the file so a
// TensorBoard watching the folder sees it at once.
func (w *Writer) Scalars(step int64, names []string, values []float64) error {
	if len(names) != len(values) {
		return errors.New("tensorboard: names and values differ in number")
	}
	e := Event{WallTime: unixSeconds(w.now()), Step: step}
	for i, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			e.Values = append(e.Values, Value{names[i], float32(v)})
		}
	}
	if len(e.Values) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.write(e); err != nil {
		return err
	}
	return w.w.Flush()
}

// Flush writes buffered records to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

// Close flushes, syncs and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.w.Flush()
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read decodes every event of an event file, checking both checksums of
// each record. A record cut short at the end (a writer still running) ends
// the read without error.
func Read(r io.Reader) ([]Event, error) {
	br := bufio.NewReader(r)
	var out []Event
	for n := 0; ; n++ {
		var head [12]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return out, nil
			}
			return out, err
		}
		if got, want := binary.LittleEndian.Uint32(head[8:]), maskedCRC(head[:8]); got != want {
			return out, fmt.Errorf("record %d: length checksum %08x, want %08x", n, got, want)
		}
		size := binary.LittleEndian.Uint64(head[:8])
		if size > 64<<20 {
			return out, fmt.Errorf("record %d: length %d is not plausible", n, size)
		}
		data := make([]byte, size+4)
		if _, err := io.ReadFull(br, data); err != nil {
			return out, nil
		}
		if got, want := binary.LittleEndian.Uint32(data[size:]), maskedCRC(data[:size]); got != want {
			return out, fmt.Errorf("record %d: data checksum %08x, want %08x", n, got, want)
		}
		e, err := unmarshalEvent(data[:size])
		if err != nil {
			return out, fmt.Errorf("record %d: %v", n, err)
		}
		out = append(out, e)
	}
}

// fields walks a protobuf message, calling fn for each field with its
// varint, fixed or length-delimited payload; unknown fields are skipped
// as the format allows.
func fields(b []byte, fn func(field, wire int, u uint64, p []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("bad field key")
		}
		b = b[n:]
		field, wire := int(key>>3), int(key&7)
		var u uint64
		var p []byte
		switch wire {
		case wireVarint:
			u, n = binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("field %d: bad varint", field)
			}
			b = b[n:]
		case wire64:
			if len(b) < 8 {
				return fmt.Errorf("field %d: short fixed64", field)
			}
			u, b = binary.LittleEndian.Uint64(b), b[8:]
		case wire32:
			if len(b) < 4 {
				return fmt.Errorf("field %d: short fixed32", field)
			}
			u, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("field %d: bad length", field)
			}
			p, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("field %d: wire type %d not supported", field, wire)
		}
		if err := fn(field, wire, u, p); err != nil {
			return err
		}
	}
	return nil
}

func unmarshalEvent(b []byte) (Event, error) {
	var e Event
	err := fields(b, func(field, wire int, u uint64, p []byte) error {
		switch {
		case field == 1 && wire == wire64:
			e.WallTime = math.Float64frombits(u)
		case field == 2 && wire == wireVarint:
			e.Step = int64(u)
		case field == 3 && wire == wireBytes:
			e.FileVersion = string(p)
		case field == 5 && wire == wireBytes:
			return fields(p, func(field, wire int, _ uint64, p []byte) error {
				if field != 1 || wire != wireBytes {
					return nil
				}
				var v Value
				err := fields(p, func(field, wire int, u uint64, p []byte) error {
					switch {
					case field == 1 && wire == wireBytes:
						v.Tag = string(p)
					case field == 2 && wire == wire32:
						v.Value = math.Float32frombits(uint32(u))
					}
					return nil
				})
				e.Values = append(e.Values, v)
				return err
			})
		}
		return nil
	})
	return e, err
}

// Tag names as the Hugging Face Trainer reports them to TensorBoard, so
// dashboards built for LLaMA-Factory runs show gotune's too.
var tagOf = map[string]string{
	"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm", "epoch": "train/epoch",
	"tokens_per_s": "train/tokens_per_second", "mem_rss_mb": "train/mem_rss_mb", "mem_peak_mb": "train/mem_peak_mb",
	"eval_loss": "eval/loss",
}

// Tag maps a trainer_log.jsonl key to its TensorBoard tag.
func Tag(key string) string {
	if t, ok := tagOf[key]; ok {
		return t
	}
	return "train/" + key
}
