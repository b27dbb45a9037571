package safefile

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Files written through a temporary name (os.CreateTemp: 0600,
// os.MkdirTemp: 0700) keep those modes after the rename, so outputs were
// private whatever the user's umask. FilePerm and DirPerm give the modes
// os.Create and os.Mkdir would have given, for a Chmod before the rename.

// FilePerm is 0666 less the process umask.
func FilePerm() os.FileMode { return 0o666 &^ umask() }

// DirPerm is 0777 less the process umask.
func DirPerm() os.FileMode { return 0o777 &^ umask() }

// Masked is perm less the process umask.
func Masked(perm os.FileMode) os.FileMode { return perm &^ umask() }

// umask reads the process umask. /proc/self/status reports it without
// changing it; the fallback sets and restores it once, early, because the
// umask is process-wide and a concurrent file creation could see it zero.
var umask = sync.OnceValue(func() os.FileMode {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return os.FileMode(m)
				}
			}
		}
	}
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return os.FileMode(m)
})
