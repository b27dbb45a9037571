package chat

import (
	"math"
	"math/big"
)

// CPython's float ** calls the C library's pow, which rounds to within
// about half a unit in the last place; Go's math.Pow can be off by one or
// two units. pyPow computes x**y in 192-bit arithmetic and rounds once, so
// that 0.1 ** -3 prints 999.9999999999999 as in Python.

const powPrec = 192

// pyPow is x ** y: integer powers exactly rounded from the fraction,
// other powers of x > 0 through 192-bit logarithm and exponential; zero,
// infinite and NaN operands go to math.Pow, whose special cases match C's.
func pyPow(x, y float64) float64 {
	if x == 0 || math.IsInf(x, 0) || math.IsNaN(x) || math.IsInf(y, 0) || math.IsNaN(y) || y == 0 || x == 1 {
		return math.Pow(x, y)
	}
	if lg := math.Abs(y * math.Log2(math.Abs(x))); lg > 1100 {
		return math.Pow(x, y) // overflows or underflows either way
	}
	if y == math.Trunc(y) && math.Abs(y) <= 64 {
		// an integer power is exact as a fraction, rounded once
		n := int64(math.Abs(y))
		r := new(big.Rat).SetFloat64(x)
		p := new(big.Rat).SetInt64(1)
		for b := r; n > 0; n >>= 1 {
			if n&1 == 1 {
				p.Mul(p, b)
			}
			if n > 1 {
				b = new(big.Rat).Mul(b, b)
			}
		}
		if y < 0 {
			p.Inv(p)
		}
		f, _ := p.Float64()
		return f
	}
	if x < 0 {
		return math.Pow(x, y) // a fractional power of a negative number: NaN
	}
	t := new(big.Float).SetPrec(powPrec).Mul(bigLn(x), new(big.Float).SetPrec(powPrec).SetFloat64(y))
	f, _ := bigExp(t).Float64()
	return f
}

// bigLn2 is ln 2 to powPrec bits: 2 atanh(1/3).
func bigLn2() *big.Float {
	return bigAtanh2(new(big.Float).SetPrec(powPrec).Quo(big.NewFloat(1).SetPrec(powPrec), big.NewFloat(3).SetPrec(powPrec)))
}

// bigAtanh2 is 2 atanh(z) = 2 (z + z³/3 + z⁵/5 + ...) for |z| <= 1/3.
func bigAtanh2(z *big.Float) *big.Float {
	sum := new(big.Float).SetPrec(powPrec).Set(z)
	z2 := new(big.Float).SetPrec(powPrec).Mul(z, z)
	term := new(big.Float).SetPrec(powPrec).Set(z)
	eps := new(big.Float).SetPrec(powPrec).SetMantExp(big.NewFloat(1), -powPrec-8)
	for k := int64(3); ; k += 2 {
		term.Mul(term, z2)
		add := new(big.Float).SetPrec(powPrec).Quo(term, new(big.Float).SetPrec(powPrec).SetInt64(k))
		sum.Add(sum, add)
		if new(big.Float).Abs(add).Cmp(eps) < 0 {
			break
		}
	}
	return sum.Mul(sum, big.NewFloat(2).SetPrec(powPrec))
}

// bigLn is ln x for x > 0: x = m·2^k with m in [0.5, 1), ln m by atanh.
func bigLn(x float64) *big.Float {
	m, k := math.Frexp(x)
	bm := new(big.Float).SetPrec(powPrec).SetFloat64(m)
	one := new(big.Float).SetPrec(powPrec).SetInt64(1)
	z := new(big.Float).SetPrec(powPrec).Quo(new(big.Float).SetPrec(powPrec).Sub(bm, one), new(big.Float).SetPrec(powPrec).Add(bm, one))
	ln := bigAtanh2(z)
	return ln.Add(ln, new(big.Float).SetPrec(powPrec).Mul(bigLn2(), new(big.Float).SetPrec(powPrec).SetInt64(int64(k))))
}

// bigExp is e^t: t = k ln 2 + r with |r| <= ln 2 / 2, e^r by its series.
func bigExp(t *big.Float) *big.Float {
	ln2 := bigLn2()
	q, _ := new(big.Float).SetPrec(powPrec).Quo(t, ln2).Float64()
	k := math.Round(q)
	r := new(big.Float).SetPrec(powPrec).Sub(t, new(big.Float).SetPrec(powPrec).Mul(ln2, new(big.Float).SetPrec(powPrec).SetFloat64(k)))
	sum := new(big.Float).SetPrec(powPrec).SetInt64(1)
	term := new(big.Float).SetPrec(powPrec).SetInt64(1)
	eps := new(big.Float).SetPrec(powPrec).SetMantExp(big.NewFloat(1), -powPrec-8)
	for n := int64(1); n < 200; n++ {
		term.Mul(term, r)
		term.Quo(term, new(big.Float).SetPrec(powPrec).SetInt64(n))
		sum.Add(sum, term)
		if new(big.Float).Abs(term).Cmp(eps) < 0 {
			break
		}
	}
	return sum.SetMantExp(sum, int(k))
}
