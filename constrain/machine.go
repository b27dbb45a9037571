package constrain

import (
	"encoding/binary"
)

// Grammar is what an output must be: a sequence of items (head), then any
// number of repetitions of another sequence (again), e.g. one tool call
// and then more.
type Grammar struct {
	items   []Item // head followed by again
	headLen int
}

type itemKind uint8

const (
	iWS    itemKind = iota // optional whitespace
	iLit                   // exactly these bytes
	iValue                 // a JSON value of node
	iUntil                 // any text up to and including lit (a reasoning block)
	iBlock                 // optional: lit, any text, then close (a reasoning block the model opens)
)

// Item is one part of a grammar: build it with WS, Lit, Val or Until.
type Item struct {
	kind  itemKind
	lit   string
	close string // iBlock
	node  *Node
}

// WS, Lit, Value and Until build grammar items.
func WS() Item                { return Item{kind: iWS} }
func Lit(s string) Item       { return Item{kind: iLit, lit: s} }
func Val(n *Node) Item        { return Item{kind: iValue, node: n} }
func Until(close string) Item { return Item{kind: iUntil, lit: close} }

// Block is an optional block: open, any text, close ("<think>" …
// "</think>"), or nothing.
func Block(open, close string) Item { return Item{kind: iBlock, lit: open, close: close} }

// NewGrammar makes a grammar of head followed by zero or more repetitions
// of again (none when again is empty).
func NewGrammar(head, again []Item) *Grammar {
	g := &Grammar{items: append(append([]Item(nil), head...), again...), headLen: len(head)}
	ids := map[*Node]bool{}
	next := int32(1)
	var walk func(n *Node)
	walk = func(n *Node) {
		if n == nil || ids[n] {
			return
		}
		ids[n] = true
		n.id = next
		next++
		for _, p := range n.props {
			walk(p.node)
		}
		walk(n.additional)
		walk(n.items)
		for _, a := range n.alts {
			walk(a)
		}
	}
	for _, it := range g.items {
		walk(it.node)
	}
	return g
}

// Value is the grammar of one JSON value of n, with whitespace before it.
func Value(n *Node) *Grammar { return NewGrammar([]Item{WS(), Val(n)}, nil) }

// Shared nodes for values of an unconstrained ("any") place. Their ids are
// negative so they never collide with a grammar's own nodes in cache keys.
var (
	anyNode    = &Node{kind: kAny, id: -1}
	anyObjNode = &Node{kind: kObject, id: -2, additional: anyNode}
	anyArrNode = &Node{kind: kArray, id: -3}
	boolNode   = &Node{kind: kLiteral, id: -4, lits: []string{"true", "false"}}
	nullNode   = &Node{kind: kLiteral, id: -5, lits: []string{"null"}}
	numNode    = &Node{kind: kNumber, id: -6}
	strNode    = &Node{kind: kString, id: -7}
)

type fkind uint8

const (
	fSeq fkind = iota
	fObject
	fArray
	fString
	fKey
	fNumber
	fLiteral
)

// Sub-states.
const (
	// objects
	oStart uint8 = iota // after '{'
	oNeed               // after ','
	oColon              // after the key
	oValue              // after ':'
	oAfter              // after a value
)

const (
	aStart uint8 = iota // after '['
	aNeed               // after ','
	aAfter              // after a value
)

const (
	sNormal uint8 = iota
	sEsc
	sHex
	sUTF
)

const (
	nSign uint8 = iota // after '-'
	nZero              // a leading 0
	nInt
	nDot
	nFrac
	nE
	nESign
	nExp
)

// Bounds that keep every output finite and every number representable: a
// model stuck on whitespace or digits is forced on.
const (
	maxWS        = 12 // whitespace bytes in a row
	maxIntDigits = 15 // integer part (exact in a float64 and an int64)
	maxFracDig   = 15
	maxExpDigits = 2
)

// frame is one level of the automaton's stack. Frames are never modified
// once made: a step makes a new top frame sharing the parent.
type frame struct {
	parent *frame
	g      *Grammar // fSeq
	node   *Node
	kind   fkind
	st     uint8
	ws     uint8  // whitespace bytes in a row
	n      uint32 // seq: Item; array: items (capped); number: digits; string: bytes pending
	pos    uint32 // seq, literal, key: bytes matched
	lo, hi uint8  // string: range of the next UTF-8 continuation byte
	cur    int32  // object: index of the property whose value comes, -1 undeclared
	set    uint64 // object: properties seen; literal, key: candidates
}

func (f *frame) clone() *frame { c := *f; return &c }

func isWS(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }

// State is where the recogniser is after some bytes: the live alternatives
// (more than one only while an anyOf is undecided).
type State struct {
	alts []*frame
}

// Start is the state before any output.
func (g *Grammar) Start() State {
	return State{alts: []*frame{{kind: fSeq, g: g}}}
}

// Step returns the state after one more byte.
func (s State) Step(b byte) State {
	return State{alts: stepAll(s.alts, b, nil)}
}

// StepBytes steps each byte in turn; it stops early once dead.
func (s State) StepBytes(p []byte) State {
	for _, b := range p {
		if s = s.Step(b); s.Dead() {
			break
		}
	}
	return s
}

// Dead reports that no continuation can be valid.
func (s State) Dead() bool { return len(s.alts) == 0 }

// Complete reports that the output may end here.
func (s State) Complete() bool {
	for _, f := range s.alts {
		if complete(f) {
			return true
		}
	}
	return false
}

// Final reports that the output is complete and no byte may follow.
func (s State) Final() bool {
	if !s.Complete() {
		return false
	}
	var buf []*frame
	for b := 0; b < 256; b++ {
		if buf = stepAll(s.alts, byte(b), buf[:0]); len(buf) > 0 {
			return false
		}
	}
	return true
}

// maxAlts bounds the alternatives followed at once (nested anyOf).
const maxAlts = 64

func stepAll(in []*frame, b byte, out []*frame) []*frame {
	for _, f := range in {
		out = step(f, b, out)
		if len(out) > maxAlts {
			out = out[:maxAlts]
		}
	}
	return out
}

// step appends the frames that f becomes after b (none: b is invalid).
func step(f *frame, b byte, out []*frame) []*frame {
	switch f.kind {
	case fSeq:
		return stepSeq(f, b, out)
	case fObject:
		return stepObject(f, b, out)
	case fArray:
		return stepArray(f, b, out)
	case fString:
		st, n, lo, hi, ok, closed := strByte(f.st, f.n, f.lo, f.hi, b)
		if !ok {
			return out
		}
		if closed {
			return append(out, f.parent)
		}
		if st == f.st && st == sNormal {
			return append(out, f) // nothing changed: no allocation
		}
		c := f.clone()
		c.st, c.n, c.lo, c.hi = st, n, lo, hi
		return append(out, c)
	case fKey:
		return stepKey(f, b, out)
	case fNumber:
		return stepNumber(f, b, out)
	case fLiteral:
		return stepLiteral(f, b, out)
	}
	return out
}

// wsFrame takes a whitespace byte where whitespace may go. A run of it is
// at most one newline, first, then spaces or tabs (indentation): enough for
// any layout, and a model cannot fill its budget with blank lines.
func wsFrame(f *frame, b byte, out []*frame) ([]*frame, bool) {
	if !isWS(b) {
		return out, false
	}
	if b == '\r' || b == '\n' && f.ws > 0 {
		return out, true // handled: refused
	}
	if f.ws < maxWS {
		c := f.clone()
		c.ws++
		out = append(out, c)
	}
	return out, true
}

func stepSeq(f *frame, b byte, out []*frame) []*frame {
	g := f.g
	idx := int(f.n)
	if idx == len(g.items) {
		if g.headLen == len(g.items) {
			return out // done: nothing may follow
		}
		c := f.clone()
		c.n, c.pos = uint32(g.headLen), 0
		return stepSeq(c, b, out)
	}
	it := g.items[idx]
	switch it.kind {
	case iWS:
		// Between the parts of a reply (after </think>, between tool
		// calls) blank lines are usual: any whitespace, up to the bound.
		if isWS(b) {
			if f.ws < maxWS {
				c := f.clone()
				c.ws++
				out = append(out, c)
			}
			return out
		}
		c := f.clone()
		c.n, c.ws = f.n+1, 0
		return stepSeq(c, b, out)
	case iLit:
		if it.lit[f.pos] != b {
			return out
		}
		c := f.clone()
		c.ws = 0
		if c.pos++; int(c.pos) == len(it.lit) {
			c.n, c.pos = c.n+1, 0
		}
		return append(out, c)
	case iUntil:
		c := f.clone()
		switch {
		case it.lit[f.pos] == b:
			if c.pos++; int(c.pos) == len(it.lit) {
				c.n, c.pos = c.n+1, 0
			}
		case it.lit[0] == b:
			c.pos = 1
		default:
			c.pos = 0
		}
		return append(out, c)
	case iValue:
		after := f.clone()
		after.n, after.pos, after.ws = f.n+1, 0, 0
		return startValue(it.node, b, after, out)
	case iBlock:
		// cur: 0 not begun, 1 in the opening tag, 2 inside the block.
		c := f.clone()
		switch f.cur {
		case 0:
			skip := f.clone()
			skip.n++
			out = stepSeq(skip, b, out)
			if it.lit[0] == b {
				c.cur, c.pos = 1, 1
				out = append(out, c)
			}
			return out
		case 1:
			if it.lit[f.pos] != b {
				return out
			}
			if c.pos++; int(c.pos) == len(it.lit) {
				c.cur, c.pos = 2, 0
			}
			return append(out, c)
		}
		switch {
		case it.close[f.pos] == b:
			if c.pos++; int(c.pos) == len(it.close) {
				c.n, c.pos, c.cur = c.n+1, 0, 0
			}
		case it.close[0] == b:
			c.pos = 1
		default:
			c.pos = 0
		}
		return append(out, c)
	}
	return out
}

// startValue appends the frames for a value of n that begins with b; after
// is where the parent goes once the value is complete.
func startValue(n *Node, b byte, after *frame, out []*frame) []*frame {
	if n == nil {
		n = anyNode
	}
	switch n.kind {
	case kAnyOf:
		for _, a := range n.alts {
			out = startValue(a, b, after, out)
		}
		return out
	case kAny:
		switch {
		case b == '{':
			n = anyObjNode
		case b == '[':
			n = anyArrNode
		case b == '"':
			n = strNode
		case b == '-' || b >= '0' && b <= '9':
			n = numNode
		case b == 't' || b == 'f':
			n = boolNode
		case b == 'n':
			n = nullNode
		default:
			return out
		}
		return startValue(n, b, after, out)
	case kObject:
		if b == '{' {
			out = append(out, &frame{kind: fObject, node: n, parent: after, st: oStart, cur: -1})
		}
	case kArray:
		if b == '[' {
			out = append(out, &frame{kind: fArray, node: n, parent: after, st: aStart})
		}
	case kString:
		if b == '"' {
			out = append(out, &frame{kind: fString, node: n, parent: after})
		}
	case kNumber, kInteger:
		f := &frame{kind: fNumber, node: n, parent: after}
		switch {
		case b == '-':
			f.st = nSign
		case b == '0':
			f.st = nZero
		case b >= '1' && b <= '9':
			f.st, f.n = nInt, 1
		default:
			return out
		}
		out = append(out, f)
	case kLiteral:
		var set uint64
		for i, l := range n.lits {
			if l[0] == b {
				set |= 1 << i
			}
		}
		if set != 0 {
			out = append(out, literalAt(&frame{kind: fLiteral, node: n, parent: after}, set, 1))
		}
	}
	return out
}

// literalAt is a literal frame with pos bytes matched; once every candidate
// is fully matched the value is over and the parent takes its place, so
// that the end of a value is known without one more byte.
func literalAt(f *frame, set uint64, pos uint32) *frame {
	open := false
	for i, l := range f.node.lits {
		if set&(1<<i) != 0 && len(l) > int(pos) {
			open = true
			break
		}
	}
	if !open {
		return f.parent
	}
	c := f.clone()
	c.set, c.pos = set, pos
	return c
}

func stepLiteral(f *frame, b byte, out []*frame) []*frame {
	var next uint64
	done := false
	for i, l := range f.node.lits {
		if f.set&(1<<i) == 0 {
			continue
		}
		if len(l) > int(f.pos) && l[f.pos] == b {
			next |= 1 << i
		} else if len(l) == int(f.pos) {
			done = true
		}
	}
	if next != 0 {
		out = append(out, literalAt(f, next, f.pos+1))
	}
	if done {
		// A shorter value ended here (enum 1 and 12): b belongs to the parent.
		out = step(f.parent, b, out)
	}
	return out
}

func stepNumber(f *frame, b byte, out []*frame) []*frame {
	digit := b >= '0' && b <= '9'
	integer := f.node.kind == kInteger
	to := func(st uint8, n uint32) []*frame {
		c := f.clone()
		c.st, c.n = st, n
		return append(out, c)
	}
	switch f.st {
	case nSign:
		switch {
		case b == '0':
			return to(nZero, 0)
		case digit:
			return to(nInt, 1)
		}
		return out
	case nZero, nInt:
		if digit && f.st == nInt && f.n < maxIntDigits {
			return to(nInt, f.n+1)
		}
		if !integer && b == '.' {
			return to(nDot, 0)
		}
		if !integer && (b == 'e' || b == 'E') {
			return to(nE, 0)
		}
	case nDot:
		if digit {
			return to(nFrac, 1)
		}
		return out
	case nFrac:
		if digit && f.n < maxFracDig {
			return to(nFrac, f.n+1)
		}
		if b == 'e' || b == 'E' {
			return to(nE, 0)
		}
	case nE:
		if b == '+' || b == '-' {
			return to(nESign, 0)
		}
		if digit {
			return to(nExp, 1)
		}
		return out
	case nESign:
		if digit {
			return to(nExp, 1)
		}
		return out
	case nExp:
		if digit && f.n < maxExpDigits {
			return to(nExp, f.n+1)
		}
	}
	if digit {
		return out // too many digits: the number must end, not go on
	}
	// The number ends before b, which belongs to the parent.
	return step(f.parent, b, out)
}

func numberDone(st uint8) bool {
	return st == nZero || st == nInt || st == nFrac || st == nExp
}

func stepArray(f *frame, b byte, out []*frame) []*frame {
	if o, ok := wsFrame(f, b, out); ok {
		return o
	}
	n := f.node
	value := func() []*frame {
		after := f.clone()
		after.st, after.ws = aAfter, 0
		// The count is kept only as far as the bounds need it, so that
		// long arrays share states (and cached masks).
		if int(after.n) < max(n.minItems, n.maxItems) {
			after.n++
		}
		return startValue(n.items, b, after, out)
	}
	switch f.st {
	case aStart:
		if b == ']' {
			if n.minItems == 0 {
				return append(out, f.parent)
			}
			return out
		}
		return value()
	case aNeed:
		return value()
	case aAfter:
		switch b {
		case ',':
			if n.maxItems > 0 && int(f.n) >= n.maxItems {
				return out
			}
			c := f.clone()
			c.st, c.ws = aNeed, 0
			return append(out, c)
		case ']':
			if int(f.n) >= n.minItems {
				return append(out, f.parent)
			}
		}
	}
	return out
}

func (n *Node) moreKeys(seen uint64) bool {
	if n.additional != nil {
		return true
	}
	return seen != (uint64(1)<<len(n.props))-1
}

func stepObject(f *frame, b byte, out []*frame) []*frame {
	if o, ok := wsFrame(f, b, out); ok {
		return o
	}
	n := f.node
	switch f.st {
	case oStart, oNeed:
		if b == '"' && n.moreKeys(f.set) {
			return append(out, &frame{kind: fKey, node: n, parent: f, set: keyCandidates(n, f.set)})
		}
		if b == '}' && f.st == oStart && n.required == 0 {
			return append(out, f.parent)
		}
	case oColon:
		if b == ':' {
			c := f.clone()
			c.st, c.ws = oValue, 0
			return append(out, c)
		}
	case oValue:
		after := f.clone()
		after.st, after.ws = oAfter, 0
		vn := n.additional
		if f.cur >= 0 {
			vn = n.props[f.cur].node
			after.set |= 1 << f.cur
		}
		after.cur = -1
		return startValue(vn, b, after, out)
	case oAfter:
		switch {
		case b == ',' && n.moreKeys(f.set):
			c := f.clone()
			c.st, c.ws = oNeed, 0
			return append(out, c)
		case b == '}' && f.set&n.required == n.required:
			return append(out, f.parent)
		}
	}
	return out
}

// stepKey reads an object key. While the bytes still spell declared
// property names, those are tracked, so the value that follows gets that
// property's schema and a declared name used twice is refused. A key that
// is no declared name is an undeclared property: allowed only with
// additionalProperties, and then written without escapes (so it cannot be
// a declared name in disguise).
func stepKey(f *frame, b byte, out []*frame) []*frame {
	n := f.node
	obj := f.parent
	if f.st == sNormal && b == '"' {
		parent := obj.clone()
		parent.st, parent.ws, parent.cur = oColon, 0, -1
		for i, p := range n.props {
			if f.set&(1<<i) != 0 && len(p.key) == int(f.pos) {
				if obj.set&(1<<i) != 0 {
					return out // a duplicate
				}
				parent.cur = int32(i)
			}
		}
		if parent.cur < 0 && n.additional == nil {
			return out
		}
		return append(out, parent)
	}
	var next uint64
	if f.set != 0 {
		for i, p := range n.props {
			if f.set&(1<<i) != 0 && len(p.key) > int(f.pos) && p.key[f.pos] == b {
				next |= 1 << i
			}
		}
	}
	if next == 0 && (n.additional == nil || b == '\\' && len(n.props) > 0) {
		return out
	}
	st, cnt, lo, hi, ok, _ := strByte(f.st, f.n, f.lo, f.hi, b)
	if !ok {
		return out
	}
	if next == 0 && f.set == 0 && st == sNormal && f.st == sNormal {
		return append(out, f) // an undeclared key goes on: no allocation
	}
	c := f.clone()
	c.st, c.n, c.lo, c.hi, c.set = st, cnt, lo, hi, next
	if next != 0 {
		c.pos = f.pos + 1
	} else {
		c.pos = 0 // no longer tracked: keeps states (and cache keys) shared
	}
	return append(out, c)
}

// keyCandidates are the declared names a new key may spell: all of them
// when undeclared keys are allowed (to catch duplicates), else those not
// yet used.
func keyCandidates(n *Node, seen uint64) uint64 {
	all := uint64(1)<<len(n.props) - 1
	if n.additional != nil {
		return all
	}
	return all &^ seen
}

// strByte is the JSON string grammar, with UTF-8 checked byte by byte.
func strByte(st uint8, n uint32, lo, hi uint8, b byte) (uint8, uint32, uint8, uint8, bool, bool) {
	switch st {
	case sNormal:
		switch {
		case b == '"':
			return st, 0, 0, 0, true, true
		case b == '\\':
			return sEsc, 0, 0, 0, true, false
		case b < 0x20:
			return st, 0, 0, 0, false, false
		case b < 0x80:
			return st, 0, 0, 0, true, false
		case b >= 0xC2 && b <= 0xDF:
			return sUTF, 1, 0x80, 0xBF, true, false
		case b == 0xE0:
			return sUTF, 2, 0xA0, 0xBF, true, false
		case b == 0xED:
			return sUTF, 2, 0x80, 0x9F, true, false
		case b >= 0xE1 && b <= 0xEF:
			return sUTF, 2, 0x80, 0xBF, true, false
		case b == 0xF0:
			return sUTF, 3, 0x90, 0xBF, true, false
		case b >= 0xF1 && b <= 0xF3:
			return sUTF, 3, 0x80, 0xBF, true, false
		case b == 0xF4:
			return sUTF, 3, 0x80, 0x8F, true, false
		}
		return st, 0, 0, 0, false, false
	case sUTF:
		if b < lo || b > hi {
			return st, 0, 0, 0, false, false
		}
		if n == 1 {
			return sNormal, 0, 0, 0, true, false
		}
		return sUTF, n - 1, 0x80, 0xBF, true, false
	case sEsc:
		switch b {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			return sNormal, 0, 0, 0, true, false
		case 'u':
			return sHex, 4, 0, 0, true, false
		}
		return st, 0, 0, 0, false, false
	case sHex:
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F') {
			return st, 0, 0, 0, false, false
		}
		if n == 1 {
			return sNormal, 0, 0, 0, true, false
		}
		return sHex, n - 1, 0, 0, true, false
	}
	return st, 0, 0, 0, false, false
}

// complete reports whether the output may end with f on top.
func complete(f *frame) bool {
	switch f.kind {
	case fSeq:
		return seqComplete(f)
	case fNumber:
		return numberDone(f.st) && complete(f.parent)
	case fLiteral:
		for i, l := range f.node.lits {
			if f.set&(1<<i) != 0 && len(l) == int(f.pos) {
				return complete(f.parent)
			}
		}
	}
	return false
}

func seqComplete(f *frame) bool {
	g := f.g
	idx := int(f.n)
	if idx == len(g.items) {
		return true
	}
	// Whitespace and an optional block not begun may be left out.
	onlyWS := func(items []Item) bool {
		for _, it := range items {
			if it.kind != iWS && it.kind != iBlock {
				return false
			}
		}
		return true
	}
	if f.pos != 0 || f.cur != 0 {
		return false
	}
	if idx < g.headLen {
		return onlyWS(g.items[idx:g.headLen])
	}
	// In a repetition: complete when it has not really begun, or only
	// whitespace is left of it.
	return onlyWS(g.items[g.headLen:idx]) || onlyWS(g.items[idx:])
}

// key appends a description of the state that identifies it exactly: equal
// keys allow equal sets of tokens.
func (s State) key(dst []byte) []byte {
	for _, f := range s.alts {
		for ; f != nil; f = f.parent {
			var id int32
			if f.node != nil {
				id = f.node.id
			}
			dst = append(dst, byte(f.kind), f.st, f.ws, f.lo, f.hi)
			dst = binary.AppendVarint(dst, int64(id))
			dst = binary.AppendUvarint(dst, uint64(f.n))
			dst = binary.AppendUvarint(dst, uint64(f.pos))
			dst = binary.AppendVarint(dst, int64(f.cur))
			dst = binary.AppendUvarint(dst, f.set)
		}
		dst = append(dst, 0xFF)
	}
	return dst
}
