// Package jsondepth bounds the nesting of untrusted JSON before it is
// decoded. encoding/json stops at 10000 levels, but decoders that walk
// tokens recursively (to keep object key order) have no bound at all, and
// a few megabytes of '[' then overflow the goroutine stack, which is a fatal
// error no recover can catch. Checking first costs one pass over the bytes.
package jsondepth

import "fmt"

// Default is the nesting gotune accepts in requests, tool arguments and
// configuration files: far deeper than any real document, far shallower than
// what recursion could not survive.
const Default = 256

// Error reports JSON nested deeper than allowed.
type Error struct {
	Offset int // byte offset of the bracket that went too deep
	Max    int
}

func (e *Error) Error() string {
	return fmt.Sprintf("JSON nested deeper than %d levels (at byte %d)", e.Max, e.Offset)
}

// Check returns an *Error when data nests arrays and objects deeper than
// max. It does not validate the JSON otherwise: the decoder that follows
// does that and reports syntax errors in its own words.
func Check(data []byte, max int) error {
	depth := 0
	inString, escaped := false, false
	for i, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > max {
				return &Error{Offset: i, Max: max}
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}
