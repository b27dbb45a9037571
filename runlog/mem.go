package runlog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mem is the process's resident memory in bytes: current (VmRSS) and peak
// (VmHWM, the high-water mark).
type Mem struct {
	RSS, Peak uint64
}

// ReadMem reads the current and peak resident set size from
// /proc/self/status (Linux).
func ReadMem() (Mem, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return Mem{}, fmt.Errorf("read memory use: %w", err)
	}
	defer f.Close()
	return ParseProcStatus(f)
}

// ParseProcStatus extracts VmRSS and VmHWM from a /proc/<pid>/status file.
func ParseProcStatus(r io.Reader) (Mem, error) {
	var m Mem
	var haveRSS, havePeak bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("/proc status: %s: expected \"<number> kB\", got %q", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSS, haveRSS = kb<<10, true
		} else {
			m.Peak, havePeak = kb<<10, true
		}
	}
	if err := sc.Err(); err != nil {
		return Mem{}, fmt.Errorf("/proc status: %w", err)
	}
	if !haveRSS || !havePeak {
		return Mem{}, fmt.Errorf("/proc status: VmRSS or VmHWM missing")
	}
	return m, nil
}
