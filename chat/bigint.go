package chat

import (
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/ardanlabs/jinja"
)

// Python's ints are unbounded; the library's are int64. An int outside
// int64 is held as a library callable named bigPrefix + its decimal digits:
// an opaque value the library passes around untouched (and finds truthy,
// as Python does every int but 0, which is never big), while the helpers
// that do arithmetic, comparison, printing and the numeric filters and
// tests read its digits. Template names cannot contain ':', so no macro
// or helper can pass for one.
const bigPrefix = "int:"

// maxBigBits bounds the ints a render builds: 2**10**9 would take Python
// minutes and gigabytes; 65536 bits is far beyond what printing allows.
const maxBigBits = 1 << 16

// maxIntDigits is Python's limit on converting an int to text
// (sys.get_int_max_str_digits()).
const maxIntDigits = 4300

func isBig(v jinja.Value) bool {
	return v.IsCallable() && strings.HasPrefix(v.AsCallable().Name, bigPrefix)
}

// isInt is Python's isinstance(v, int) (bool included).
func isInt(v jinja.Value) bool { return v.IsInt() || v.IsBool() || isBig(v) }

// toBig is the value of an int (or bool).
func toBig(v jinja.Value) *big.Int {
	switch {
	case v.IsInt():
		return big.NewInt(v.AsInt())
	case v.IsBool():
		if v.AsBool() {
			return big.NewInt(1)
		}
		return new(big.Int)
	case isBig(v):
		b, _ := new(big.Int).SetString(strings.TrimPrefix(v.AsCallable().Name, bigPrefix), 10)
		return b
	}
	return new(big.Int)
}

// newInt is an int value: a library int when it fits int64.
func (st *renderState) newInt(b *big.Int) (jinja.Value, error) {
	if b.IsInt64() {
		return jinja.NewInt(b.Int64()), nil
	}
	if b.BitLen() > maxBigBits {
		return jinja.Value{}, st.fail("integer larger than %d bits", maxBigBits)
	}
	return bigValue(b), nil
}

func bigValue(b *big.Int) jinja.Value {
	return jinja.NewCallable(bigPrefix+b.String(), func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		return jinja.Value{}, fmt.Errorf("TypeError: 'int' object is not callable")
	})
}

// bigText is str() of a big int, refused past Python's digit limit.
func bigText(v jinja.Value) (string, error) {
	s := strings.TrimPrefix(v.AsCallable().Name, bigPrefix)
	if len(strings.TrimPrefix(s, "-")) > maxIntDigits {
		return "", fmt.Errorf("ValueError: Exceeds the limit (%d digits) for integer string conversion", maxIntDigits)
	}
	return s, nil
}

// bigFloat is float(b), which Python refuses past the float range.
func bigFloat(b *big.Int) (float64, error) {
	f, _ := new(big.Float).SetInt(b).Float64()
	if math.IsInf(f, 0) {
		return 0, fmt.Errorf("OverflowError: int too large to convert to float")
	}
	return f, nil
}

// toFloat is float(v) of a number.
func toFloat(v jinja.Value) (float64, error) {
	if isBig(v) {
		return bigFloat(toBig(v))
	}
	return libFloat(v), nil
}

// bigLiteral is __bigint('digits'): an integer literal past int64.
func (st *renderState) bigLiteral(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	b, ok := new(big.Int).SetString(args[0].AsString(), 10)
	if !ok {
		return jinja.Value{}, fmt.Errorf("bad integer literal %q", args[0].AsString())
	}
	return st.newInt(b)
}

// intArith is Python's int op int (+ - * // % **), exact.
func (st *renderState) intArith(op string, a, b jinja.Value) (jinja.Value, error) {
	x, y := toBig(a), toBig(b)
	r := new(big.Int)
	switch op {
	case "+":
		r.Add(x, y)
	case "-":
		r.Sub(x, y)
	case "*":
		if x.BitLen()+y.BitLen() > maxBigBits+1 {
			return jinja.Value{}, st.fail("integer larger than %d bits", maxBigBits)
		}
		r.Mul(x, y)
	case "//", "%":
		if y.Sign() == 0 {
			return jinja.Value{}, fmt.Errorf("ZeroDivisionError: integer division or modulo by zero")
		}
		// Python floors; big.Int's DivMod is Euclidean (m >= 0)
		q, m := new(big.Int).QuoRem(x, y, new(big.Int))
		if m.Sign() != 0 && (m.Sign() < 0) != (y.Sign() < 0) {
			q.Sub(q, big.NewInt(1))
			m.Add(m, y)
		}
		if op == "//" {
			r = q
		} else {
			r = m
		}
	case "**":
		if y.Sign() < 0 {
			fx, err := bigFloat(x)
			if err != nil {
				return jinja.Value{}, err
			}
			fy, err := bigFloat(y)
			if err != nil {
				return jinja.Value{}, err
			}
			if fx == 0 {
				return jinja.Value{}, fmt.Errorf("ZeroDivisionError: 0.0 cannot be raised to a negative power")
			}
			return jinja.NewFloat(pyPow(fx, fy)), nil
		}
		// |x| <= 1 stays small whatever the exponent
		if x.CmpAbs(big.NewInt(1)) > 0 && (!y.IsInt64() || int64(x.BitLen()-1)*y.Int64() > maxBigBits) {
			return jinja.Value{}, st.fail("integer larger than %d bits", maxBigBits)
		}
		r.Exp(x, y, nil)
	default:
		return jinja.Value{}, fmt.Errorf("unknown integer operator %s", op)
	}
	return st.newInt(r)
}

// floatOperands converts two numbers for float arithmetic.
func floatOperands(a, b jinja.Value) (float64, float64, error) {
	x, err := toFloat(a)
	if err != nil {
		return 0, 0, err
	}
	y, err := toFloat(b)
	return x, y, err
}

// compareNum orders two numbers exactly, as Python does (an int past 2**53
// against a float is compared by value, not after rounding to float).
func compareNum(a, b jinja.Value) int {
	if isInt(a) && isInt(b) {
		if a.IsInt() && b.IsInt() {
			return cmpOrdered(a.AsInt(), b.AsInt())
		}
		return toBig(a).Cmp(toBig(b))
	}
	if !isBig(a) && !isBig(b) {
		return cmpOrdered(libFloat(a), libFloat(b))
	}
	// a big int against a float: exact, through big.Float
	toF := func(v jinja.Value) *big.Float {
		if isInt(v) {
			return new(big.Float).SetInt(toBig(v))
		}
		return big.NewFloat(v.AsFloat())
	}
	for _, v := range []jinja.Value{a, b} {
		if v.IsFloat() && math.IsNaN(v.AsFloat()) {
			return 2 // unordered: neither <, > nor ==
		}
	}
	return toF(a).Cmp(toF(b))
}

// negate is Python's unary minus.
func (st *renderState) negate(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	v := args[0]
	switch {
	case v.IsFloat():
		return jinja.NewFloat(-v.AsFloat()), nil
	case isInt(v):
		return st.newInt(new(big.Int).Neg(toBig(v)))
	case v.IsUndefined():
		return jinja.Value{}, fmt.Errorf("UndefinedError: unary - on an undefined value")
	}
	return jinja.Value{}, fmt.Errorf("TypeError: bad operand type for unary -: '%s'", pyTypeName(v))
}

// sub is Python's a - b.
func (st *renderState) sub(a, b jinja.Value) (jinja.Value, error) {
	if err := numOperands("-", a, b); err != nil {
		return jinja.Value{}, err
	}
	if isInt(a) && isInt(b) {
		return st.intArith("-", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	return jinja.NewFloat(x - y), nil
}

// digitLimit fails as Python's str() and repr() do when v holds, at any
// depth (dict keys included), an int past the 4300-digit print limit.
// v has passed the value bounds, which bound the walk.
func digitLimit(v jinja.Value) error {
	switch {
	case isBig(v):
		_, err := bigText(v)
		return err
	case v.IsList():
		for _, it := range v.AsList().Items {
			if err := digitLimit(it); err != nil {
				return err
			}
		}
	case v.IsDict():
		d := v.AsDict()
		for _, k := range d.Keys {
			if err := digitLimit(origKey(d, k)); err != nil {
				return err
			}
			if err := digitLimit(d.Data[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// str is Python's str(v) after the value bounds and the digit limit.
func (st *renderState) str(v jinja.Value) (string, error) {
	if err := st.check(v); err != nil {
		return "", err
	}
	if err := digitLimit(v); err != nil {
		return "", err
	}
	return pyStr(v), nil
}

// repr is Python's repr(v), bounded as str.
func (st *renderState) repr(v jinja.Value) (string, error) {
	if _, err := st.str(v); err != nil {
		return "", err
	}
	return pyRepr(v), nil
}
