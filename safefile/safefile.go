// Package safefile opens input files that came from strangers (model
// folders, adapters, configuration). A FIFO put where model.safetensors
// should be makes a plain open block until a writer appears, and a device
// such as /dev/zero never ends: every command hung. Files are opened
// without blocking and anything but a regular file is refused.
package safefile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Open opens path for reading, refusing anything but a regular file
// (symbolic links are followed, as Hugging Face caches use them).
func Open(path string) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO returns at once instead of waiting for a
	// writer; it changes nothing for regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%s); refusing to read it", path, kind(st.Mode()))
	}
	return f, nil
}

// ReadFile is os.ReadFile through Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, st.Size()+1)
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}
