//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package hub

import "context"

// lockFile is a no-op where flock is unavailable: concurrent Downloads of the
// same repo are then not safe on these platforms (see Download).
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return func() {}, nil
}
