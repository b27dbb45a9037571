//go:build !linux

package runlog

import "io"

// IsTerminal reports whether w is a terminal; only detected on Linux so far.
func IsTerminal(w io.Writer) bool { return false }

func termWidth(w io.Writer) int { return 80 }
