//go:build amd64 && !purego

#include "textflag.h"

// Vectorised exponential, softmax helpers and SwiGLU (see vmath.go). The
// exponential follows the scalar one in package nn step by step: n =
// round(x·log2e), r = x − n·ln2 with ln2 in two parts, the degree-6 Cephes
// polynomial, then scaling by 2^n; x below the underflow bound gives 0,
// above the overflow bound +Inf, and NaN stays NaN.
//
// Each constant is stored 8 times so the AVX2 code can use it as a 256-bit
// memory operand; the AVX-512 code broadcasts lane 0 into a register.

// 0: log2(e)
DATA vmc<>+0(SB)/4, $0x3fb8aa3b
DATA vmc<>+4(SB)/4, $0x3fb8aa3b
DATA vmc<>+8(SB)/4, $0x3fb8aa3b
DATA vmc<>+12(SB)/4, $0x3fb8aa3b
DATA vmc<>+16(SB)/4, $0x3fb8aa3b
DATA vmc<>+20(SB)/4, $0x3fb8aa3b
DATA vmc<>+24(SB)/4, $0x3fb8aa3b
DATA vmc<>+28(SB)/4, $0x3fb8aa3b
// 32: ln2 high part
DATA vmc<>+32(SB)/4, $0x3f318000
DATA vmc<>+36(SB)/4, $0x3f318000
DATA vmc<>+40(SB)/4, $0x3f318000
DATA vmc<>+44(SB)/4, $0x3f318000
DATA vmc<>+48(SB)/4, $0x3f318000
DATA vmc<>+52(SB)/4, $0x3f318000
DATA vmc<>+56(SB)/4, $0x3f318000
DATA vmc<>+60(SB)/4, $0x3f318000
// 64: ln2 low part (negated)
DATA vmc<>+64(SB)/4, $0x395e8083
DATA vmc<>+68(SB)/4, $0x395e8083
DATA vmc<>+72(SB)/4, $0x395e8083
DATA vmc<>+76(SB)/4, $0x395e8083
DATA vmc<>+80(SB)/4, $0x395e8083
DATA vmc<>+84(SB)/4, $0x395e8083
DATA vmc<>+88(SB)/4, $0x395e8083
DATA vmc<>+92(SB)/4, $0x395e8083
// 96: p0
DATA vmc<>+96(SB)/4, $0x39506967
DATA vmc<>+100(SB)/4, $0x39506967
DATA vmc<>+104(SB)/4, $0x39506967
DATA vmc<>+108(SB)/4, $0x39506967
DATA vmc<>+112(SB)/4, $0x39506967
DATA vmc<>+116(SB)/4, $0x39506967
DATA vmc<>+120(SB)/4, $0x39506967
DATA vmc<>+124(SB)/4, $0x39506967
// 128: p1
DATA vmc<>+128(SB)/4, $0x3ab743ce
DATA vmc<>+132(SB)/4, $0x3ab743ce
DATA vmc<>+136(SB)/4, $0x3ab743ce
DATA vmc<>+140(SB)/4, $0x3ab743ce
DATA vmc<>+144(SB)/4, $0x3ab743ce
DATA vmc<>+148(SB)/4, $0x3ab743ce
DATA vmc<>+152(SB)/4, $0x3ab743ce
DATA vmc<>+156(SB)/4, $0x3ab743ce
// 160: p2
DATA vmc<>+160(SB)/4, $0x3c088908
DATA vmc<>+164(SB)/4, $0x3c088908
DATA vmc<>+168(SB)/4, $0x3c088908
DATA vmc<>+172(SB)/4, $0x3c088908
DATA vmc<>+176(SB)/4, $0x3c088908
DATA vmc<>+180(SB)/4, $0x3c088908
DATA vmc<>+184(SB)/4, $0x3c088908
DATA vmc<>+188(SB)/4, $0x3c088908
// 192: p3
DATA vmc<>+192(SB)/4, $0x3d2aa9c1
DATA vmc<>+196(SB)/4, $0x3d2aa9c1
DATA vmc<>+200(SB)/4, $0x3d2aa9c1
DATA vmc<>+204(SB)/4, $0x3d2aa9c1
DATA vmc<>+208(SB)/4, $0x3d2aa9c1
DATA vmc<>+212(SB)/4, $0x3d2aa9c1
DATA vmc<>+216(SB)/4, $0x3d2aa9c1
DATA vmc<>+220(SB)/4, $0x3d2aa9c1
// 224: p4
DATA vmc<>+224(SB)/4, $0x3e2aaaaa
DATA vmc<>+228(SB)/4, $0x3e2aaaaa
DATA vmc<>+232(SB)/4, $0x3e2aaaaa
DATA vmc<>+236(SB)/4, $0x3e2aaaaa
DATA vmc<>+240(SB)/4, $0x3e2aaaaa
DATA vmc<>+244(SB)/4, $0x3e2aaaaa
DATA vmc<>+248(SB)/4, $0x3e2aaaaa
DATA vmc<>+252(SB)/4, $0x3e2aaaaa
// 256: p5
DATA vmc<>+256(SB)/4, $0x3f000000
DATA vmc<>+260(SB)/4, $0x3f000000
DATA vmc<>+264(SB)/4, $0x3f000000
DATA vmc<>+268(SB)/4, $0x3f000000
DATA vmc<>+272(SB)/4, $0x3f000000
DATA vmc<>+276(SB)/4, $0x3f000000
DATA vmc<>+280(SB)/4, $0x3f000000
DATA vmc<>+284(SB)/4, $0x3f000000
// 288: 1
DATA vmc<>+288(SB)/4, $0x3f800000
DATA vmc<>+292(SB)/4, $0x3f800000
DATA vmc<>+296(SB)/4, $0x3f800000
DATA vmc<>+300(SB)/4, $0x3f800000
DATA vmc<>+304(SB)/4, $0x3f800000
DATA vmc<>+308(SB)/4, $0x3f800000
DATA vmc<>+312(SB)/4, $0x3f800000
DATA vmc<>+316(SB)/4, $0x3f800000
// 320: underflow bound
DATA vmc<>+320(SB)/4, $0xc2aeac4f
DATA vmc<>+324(SB)/4, $0xc2aeac4f
DATA vmc<>+328(SB)/4, $0xc2aeac4f
DATA vmc<>+332(SB)/4, $0xc2aeac4f
DATA vmc<>+336(SB)/4, $0xc2aeac4f
DATA vmc<>+340(SB)/4, $0xc2aeac4f
DATA vmc<>+344(SB)/4, $0xc2aeac4f
DATA vmc<>+348(SB)/4, $0xc2aeac4f
// 352: overflow bound
DATA vmc<>+352(SB)/4, $0x42b17217
DATA vmc<>+356(SB)/4, $0x42b17217
DATA vmc<>+360(SB)/4, $0x42b17217
DATA vmc<>+364(SB)/4, $0x42b17217
DATA vmc<>+368(SB)/4, $0x42b17217
DATA vmc<>+372(SB)/4, $0x42b17217
DATA vmc<>+376(SB)/4, $0x42b17217
DATA vmc<>+380(SB)/4, $0x42b17217
// 384: +Inf
DATA vmc<>+384(SB)/4, $0x7f800000
DATA vmc<>+388(SB)/4, $0x7f800000
DATA vmc<>+392(SB)/4, $0x7f800000
DATA vmc<>+396(SB)/4, $0x7f800000
DATA vmc<>+400(SB)/4, $0x7f800000
DATA vmc<>+404(SB)/4, $0x7f800000
DATA vmc<>+408(SB)/4, $0x7f800000
DATA vmc<>+412(SB)/4, $0x7f800000
// 416: int32 127 (exponent bias)
DATA vmc<>+416(SB)/4, $0x0000007f
DATA vmc<>+420(SB)/4, $0x0000007f
DATA vmc<>+424(SB)/4, $0x0000007f
DATA vmc<>+428(SB)/4, $0x0000007f
DATA vmc<>+432(SB)/4, $0x0000007f
DATA vmc<>+436(SB)/4, $0x0000007f
DATA vmc<>+440(SB)/4, $0x0000007f
DATA vmc<>+444(SB)/4, $0x0000007f
// 448: tail mask: all ones
DATA vmc<>+448(SB)/4, $0xffffffff
DATA vmc<>+452(SB)/4, $0xffffffff
DATA vmc<>+456(SB)/4, $0xffffffff
DATA vmc<>+460(SB)/4, $0xffffffff
DATA vmc<>+464(SB)/4, $0xffffffff
DATA vmc<>+468(SB)/4, $0xffffffff
DATA vmc<>+472(SB)/4, $0xffffffff
DATA vmc<>+476(SB)/4, $0xffffffff
// 480: tail mask: zeros
DATA vmc<>+480(SB)/4, $0x00000000
DATA vmc<>+484(SB)/4, $0x00000000
DATA vmc<>+488(SB)/4, $0x00000000
DATA vmc<>+492(SB)/4, $0x00000000
DATA vmc<>+496(SB)/4, $0x00000000
DATA vmc<>+500(SB)/4, $0x00000000
DATA vmc<>+504(SB)/4, $0x00000000
DATA vmc<>+508(SB)/4, $0x00000000
// 512: -Inf
DATA vmc<>+512(SB)/4, $0xff800000
DATA vmc<>+516(SB)/4, $0xff800000
DATA vmc<>+520(SB)/4, $0xff800000
DATA vmc<>+524(SB)/4, $0xff800000
DATA vmc<>+528(SB)/4, $0xff800000
DATA vmc<>+532(SB)/4, $0xff800000
DATA vmc<>+536(SB)/4, $0xff800000
DATA vmc<>+540(SB)/4, $0xff800000
GLOBL vmc<>(SB), RODATA|NOPTR, $544

// AVX-512 constant registers: Z31 log2e, Z30 ln2 high, Z29 ln2 low, Z28-Z23
// the polynomial, Z22 1, Z21 underflow bound, Z20 overflow bound, Z19 +Inf.
#define CONSTS512 \
	VBROADCASTSS vmc<>+0(SB), Z31; \
	VBROADCASTSS vmc<>+32(SB), Z30; \
	VBROADCASTSS vmc<>+64(SB), Z29; \
	VBROADCASTSS vmc<>+96(SB), Z28; \
	VBROADCASTSS vmc<>+128(SB), Z27; \
	VBROADCASTSS vmc<>+160(SB), Z26; \
	VBROADCASTSS vmc<>+192(SB), Z25; \
	VBROADCASTSS vmc<>+224(SB), Z24; \
	VBROADCASTSS vmc<>+256(SB), Z23; \
	VBROADCASTSS vmc<>+288(SB), Z22; \
	VBROADCASTSS vmc<>+320(SB), Z21; \
	VBROADCASTSS vmc<>+352(SB), Z20; \
	VBROADCASTSS vmc<>+384(SB), Z19

// EXP512 replaces x with e^x (16 lanes); t, r, p, q are scratch, kl and kh
// receive the in-range and overflow lane masks. VSCALEFPS scales by 2^n
// without forming 2^n, so n = 128 (x just below the overflow bound) works.
#define EXP512(x, t, r, p, q, kl, kh) \
	VCMPPS $0x15, Z21, x, kl; \
	VCMPPS $0x1e, Z20, x, kh; \
	VMULPS Z31, x, t; \
	VRNDSCALEPS $0x08, t, t; \
	VMOVAPS x, r; \
	VFNMADD231PS Z30, t, r; \
	VFMADD231PS Z29, t, r; \
	VMOVAPS Z28, p; \
	VFMADD213PS Z27, r, p; \
	VFMADD213PS Z26, r, p; \
	VFMADD213PS Z25, r, p; \
	VFMADD213PS Z24, r, p; \
	VFMADD213PS Z23, r, p; \
	VMULPS r, r, q; \
	VFMADD213PS r, q, p; \
	VADDPS Z22, p, p; \
	VSCALEFPS.Z t, p, kl, x; \
	VMOVAPS Z19, kh, x

// EXP256 replaces x with e^x (8 lanes), constants from memory; t, r, p, q,
// ml, mh are scratch. 2^n is applied as two factors 2^(n>>1)·2^(n−n>>1) so
// that n = 128 and n = −126 stay representable. Out-of-range lanes are first
// clamped to the bounds (NaN stays): far below, the two factors would
// underflow into denormals, which cost a microcode assist per lane.
#define EXP256(x, t, r, p, q, ml, mh) \
	VCMPPS $0x01, vmc<>+320(SB), x, ml; \
	VCMPPS $0x1e, vmc<>+352(SB), x, mh; \
	VBLENDVPS ml, vmc<>+320(SB), x, x; \
	VBLENDVPS mh, vmc<>+352(SB), x, x; \
	VMULPS vmc<>+0(SB), x, t; \
	VROUNDPS $0x08, t, t; \
	VMOVAPS x, r; \
	VFNMADD231PS vmc<>+32(SB), t, r; \
	VFMADD231PS vmc<>+64(SB), t, r; \
	VMOVUPS vmc<>+96(SB), p; \
	VFMADD213PS vmc<>+128(SB), r, p; \
	VFMADD213PS vmc<>+160(SB), r, p; \
	VFMADD213PS vmc<>+192(SB), r, p; \
	VFMADD213PS vmc<>+224(SB), r, p; \
	VFMADD213PS vmc<>+256(SB), r, p; \
	VMULPS r, r, q; \
	VFMADD213PS r, q, p; \
	VADDPS vmc<>+288(SB), p, p; \
	VCVTPS2DQ t, t; \
	VPSRAD $1, t, q; \
	VPSUBD q, t, t; \
	VPADDD vmc<>+416(SB), q, q; \
	VPSLLD $23, q, q; \
	VPADDD vmc<>+416(SB), t, t; \
	VPSLLD $23, t, t; \
	VMULPS q, p, p; \
	VMULPS t, p, p; \
	VANDNPS p, ml, p; \
	VBLENDVPS mh, vmc<>+384(SB), p, x

// TAILMASK512 sets K7 to the lanes of the next 16-float block that exist:
// all when CX ≥ 16, else the low CX.
#define TAILMASK512 \
	MOVL $0xffff, AX; \
	CMPQ CX, $16; \
	JAE 4(PC); \
	MOVL $1, AX; \
	SHLL CX, AX; \
	DECL AX; \
	KMOVW AX, K7

// TAILMASK256 loads into m the lane mask for the last CX (1..7) floats.
#define TAILMASK256(m) \
	LEAQ vmc<>+480(SB), BX; \
	MOVQ CX, AX; \
	SHLQ $2, AX; \
	SUBQ AX, BX; \
	VMOVDQU (BX), m

// func expSubAVX512(dst, src *float32, n int, sub float32) float32
// dst[i] = e^(src[i]−sub) (dst nil: not stored); returns the float32 sum.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS sub+24(FP), Z18
	CONSTS512
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17

loop32:
	CMPQ CX, $32
	JB rest
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z5
	VSUBPS Z18, Z0, Z0
	VSUBPS Z18, Z5, Z5
	EXP512(Z0, Z1, Z2, Z3, Z4, K1, K2)
	EXP512(Z5, Z6, Z7, Z8, Z9, K3, K4)
	VADDPS Z0, Z16, Z16
	VADDPS Z5, Z17, Z17
	ADDQ $128, SI
	SUBQ $32, CX
	TESTQ DI, DI
	JZ loop32
	VMOVUPS Z0, (DI)
	VMOVUPS Z5, 64(DI)
	ADDQ $128, DI
	JMP loop32

rest:
	TESTQ CX, CX
	JZ done
	TAILMASK512
	VMOVUPS.Z (SI), K7, Z0
	VSUBPS Z18, Z0, Z0
	EXP512(Z0, Z1, Z2, Z3, Z4, K1, K2)
	VADDPS Z0, Z16, K7, Z16
	ADDQ $64, SI
	TESTQ DI, DI
	JZ next
	VMOVUPS Z0, K7, (DI)
	ADDQ $64, DI

next:
	SUBQ $16, CX
	JG rest

done:
	VADDPS Z17, Z16, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func expSubAVX2(dst, src *float32, n int, sub float32) float32
TEXT ·expSubAVX2(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS sub+24(FP), Y14
	VXORPS Y15, Y15, Y15

loop16:
	CMPQ CX, $16
	JB loop8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y7
	VSUBPS Y14, Y0, Y0
	VSUBPS Y14, Y7, Y7
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	EXP256(Y7, Y8, Y9, Y10, Y11, Y12, Y13)
	VADDPS Y0, Y15, Y15
	VADDPS Y7, Y15, Y15
	ADDQ $64, SI
	SUBQ $16, CX
	TESTQ DI, DI
	JZ loop16
	VMOVUPS Y0, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ $64, DI
	JMP loop16

loop8:
	CMPQ CX, $8
	JB tail
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VADDPS Y0, Y15, Y15
	ADDQ $32, SI
	SUBQ $8, CX
	TESTQ DI, DI
	JZ tail
	VMOVUPS Y0, (DI)
	ADDQ $32, DI

tail:
	TESTQ CX, CX
	JZ done
	TAILMASK256(Y13)
	VMASKMOVPS (SI), Y13, Y0
	VSUBPS Y14, Y0, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VANDPS Y13, Y0, Y1
	VADDPS Y1, Y15, Y15
	TESTQ DI, DI
	JZ done
	VMASKMOVPS Y0, Y13, (DI)

done:
	VEXTRACTF128 $1, Y15, X1
	VADDPS X1, X15, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func maxAVX512(x *float32, n int) float32
// n ≥ 1. Any NaN makes the result NaN (VMAXPS alone would drop it).
TEXT ·maxAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS vmc<>+512(SB), Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
	KXORW K4, K4, K4

loop64:
	CMPQ CX, $64
	JB rest
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVUPS 128(SI), Z6
	VMOVUPS 192(SI), Z7
	VMAXPS Z4, Z0, Z0
	VMAXPS Z5, Z1, Z1
	VMAXPS Z6, Z2, Z2
	VMAXPS Z7, Z3, Z3
	VCMPPS $3, Z4, Z5, K1
	VCMPPS $3, Z6, Z7, K2
	KORW K1, K4, K4
	KORW K2, K4, K4
	ADDQ $256, SI
	SUBQ $64, CX
	JMP loop64

rest:
	TESTQ CX, CX
	JZ done
	TAILMASK512
	VMOVUPS.Z (SI), K7, Z4
	VMAXPS Z4, Z0, K7, Z0
	VCMPPS $3, Z4, Z4, K1
	KORW K1, K4, K4
	ADDQ $64, SI
	SUBQ $16, CX
	JG rest

done:
	VMAXPS Z1, Z0, Z0
	VMAXPS Z3, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	KORTESTW K4, K4
	JZ ok
	MOVL $0x7fc00000, AX
	MOVL AX, ret+16(FP)
	RET

ok:
	MOVSS X0, ret+16(FP)
	RET

// func maxAVX2(x *float32, n int) float32
// n ≥ 1; NaN-propagating like maxAVX512.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS vmc<>+512(SB), Y0
	VMOVAPS Y0, Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y0, Y3
	VXORPS Y8, Y8, Y8

loop32:
	CMPQ CX, $32
	JB loop8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VMAXPS Y4, Y0, Y0
	VMAXPS Y5, Y1, Y1
	VMAXPS Y6, Y2, Y2
	VMAXPS Y7, Y3, Y3
	VCMPPS $3, Y4, Y5, Y9
	VCMPPS $3, Y6, Y7, Y10
	VORPS Y9, Y8, Y8
	VORPS Y10, Y8, Y8
	ADDQ $128, SI
	SUBQ $32, CX
	JMP loop32

loop8:
	CMPQ CX, $8
	JB tail
	VMOVUPS (SI), Y4
	VMAXPS Y4, Y0, Y0
	VCMPPS $3, Y4, Y4, Y9
	VORPS Y9, Y8, Y8
	ADDQ $32, SI
	SUBQ $8, CX
	JMP loop8

tail:
	TESTQ CX, CX
	JZ done
	TAILMASK256(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VCMPPS $3, Y4, Y4, Y9
	VORPS Y9, Y8, Y8
	VMOVUPS vmc<>+512(SB), Y10
	VBLENDVPS Y13, Y4, Y10, Y4
	VMAXPS Y4, Y0, Y0

done:
	VMAXPS Y1, Y0, Y0
	VMAXPS Y3, Y2, Y2
	VMAXPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VMOVMSKPS Y8, AX
	VZEROUPPER
	TESTL AX, AX
	JZ ok
	MOVL $0x7fc00000, AX
	MOVL AX, ret+16(FP)
	RET

ok:
	MOVSS X0, ret+16(FP)
	RET

// SILU512 replaces x (which holds −g) with g/(1+e^−g) = g·σ(g).
#define SILU512(x, g, t, r, p, q, kl, kh) \
	EXP512(x, t, r, p, q, kl, kh); \
	VADDPS Z22, x, x; \
	VDIVPS x, g, x

// func siluMulAVX512(a, x, u *float32, n int)
TEXT ·siluMulAVX512(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ u+16(FP), DX
	MOVQ n+24(FP), CX
	CONSTS512
	VPXORD Z18, Z18, Z18

loop32:
	CMPQ CX, $32
	JB rest
	VMOVUPS (SI), Z10
	VMOVUPS 64(SI), Z11
	VSUBPS Z10, Z18, Z0
	VSUBPS Z11, Z18, Z5
	SILU512(Z0, Z10, Z1, Z2, Z3, Z4, K1, K2)
	SILU512(Z5, Z11, Z6, Z7, Z8, Z9, K3, K4)
	VMULPS (DX), Z0, Z0
	VMULPS 64(DX), Z5, Z5
	VMOVUPS Z0, (DI)
	VMOVUPS Z5, 64(DI)
	ADDQ $128, SI
	ADDQ $128, DX
	ADDQ $128, DI
	SUBQ $32, CX
	JMP loop32

rest:
	TESTQ CX, CX
	JZ done
	TAILMASK512
	VMOVUPS.Z (SI), K7, Z10
	VMOVUPS.Z (DX), K7, Z12
	VSUBPS Z10, Z18, Z0
	SILU512(Z0, Z10, Z1, Z2, Z3, Z4, K1, K2)
	VMULPS Z12, Z0, Z0
	VMOVUPS Z0, K7, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JG rest

done:
	VZEROUPPER
	RET

// SILUBWD computes, from g, da and σ(g) in s, du = da·g·σ into s and
// dg = da·u·σ·(1+g·(1−σ)) into u (which holds u on entry); t is scratch.
#define SILUBWD(g, da, s, u, t, one) \
	VSUBPS s, one, t; \
	VFMADD213PS one, g, t; \
	VMULPS da, u, u; \
	VMULPS s, u, u; \
	VMULPS t, u, u; \
	VMULPS g, s, s; \
	VMULPS da, s, s

// SIGMOID512 replaces x (which holds −g) with σ(g) = 1/(1+e^−g).
#define SIGMOID512(x, t, r, p, q, kl, kh) \
	EXP512(x, t, r, p, q, kl, kh); \
	VADDPS Z22, x, x; \
	VDIVPS x, Z22, x

// func siluMulBwdAVX512(dg, du, da, x, u *float32, n int)
TEXT ·siluMulBwdAVX512(SB), NOSPLIT, $0-48
	MOVQ dg+0(FP), DI
	MOVQ du+8(FP), R8
	MOVQ da+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ u+32(FP), R9
	MOVQ n+40(FP), CX
	CONSTS512
	VPXORD Z18, Z18, Z18

loop32:
	CMPQ CX, $32
	JB rest
	VMOVUPS (SI), Z10
	VMOVUPS 64(SI), Z11
	VSUBPS Z10, Z18, Z0
	VSUBPS Z11, Z18, Z5
	SIGMOID512(Z0, Z1, Z2, Z3, Z4, K1, K2)
	SIGMOID512(Z5, Z6, Z7, Z8, Z9, K3, K4)
	VMOVUPS (DX), Z12
	VMOVUPS 64(DX), Z13
	VMOVUPS (R9), Z14
	VMOVUPS 64(R9), Z15
	SILUBWD(Z10, Z12, Z0, Z14, Z1, Z22)
	SILUBWD(Z11, Z13, Z5, Z15, Z6, Z22)
	VMOVUPS Z0, (R8)
	VMOVUPS Z5, 64(R8)
	VMOVUPS Z14, (DI)
	VMOVUPS Z15, 64(DI)
	ADDQ $128, SI
	ADDQ $128, DX
	ADDQ $128, R9
	ADDQ $128, R8
	ADDQ $128, DI
	SUBQ $32, CX
	JMP loop32

rest:
	TESTQ CX, CX
	JZ done
	TAILMASK512
	VMOVUPS.Z (SI), K7, Z10
	VMOVUPS.Z (DX), K7, Z12
	VMOVUPS.Z (R9), K7, Z14
	VSUBPS Z10, Z18, Z0
	SIGMOID512(Z0, Z1, Z2, Z3, Z4, K1, K2)
	SILUBWD(Z10, Z12, Z0, Z14, Z1, Z22)
	VMOVUPS Z0, K7, (R8)
	VMOVUPS Z14, K7, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R9
	ADDQ $64, R8
	ADDQ $64, DI
	SUBQ $16, CX
	JG rest

done:
	VZEROUPPER
	RET

// func siluMulAVX2(a, x, u *float32, n int)
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ u+16(FP), DX
	MOVQ n+24(FP), CX
	VXORPS Y15, Y15, Y15
	VMOVUPS vmc<>+288(SB), Y14

loop8:
	CMPQ CX, $8
	JB tail
	VMOVUPS (SI), Y8
	VSUBPS Y8, Y15, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VADDPS Y14, Y0, Y0
	VDIVPS Y0, Y8, Y0
	VMULPS (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP loop8

tail:
	TESTQ CX, CX
	JZ done
	TAILMASK256(Y13)
	VMASKMOVPS (SI), Y13, Y8
	VMASKMOVPS (DX), Y13, Y9
	VSUBPS Y8, Y15, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VADDPS Y14, Y0, Y0
	VDIVPS Y0, Y8, Y0
	VMULPS Y9, Y0, Y0
	VMASKMOVPS Y0, Y13, (DI)

done:
	VZEROUPPER
	RET

// func siluMulBwdAVX2(dg, du, da, x, u *float32, n int)
TEXT ·siluMulBwdAVX2(SB), NOSPLIT, $0-48
	MOVQ dg+0(FP), DI
	MOVQ du+8(FP), R8
	MOVQ da+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ u+32(FP), R9
	MOVQ n+40(FP), CX
	VXORPS Y15, Y15, Y15
	VMOVUPS vmc<>+288(SB), Y14

loop8:
	CMPQ CX, $8
	JB tail
	VMOVUPS (SI), Y8
	VSUBPS Y8, Y15, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VADDPS Y14, Y0, Y0
	VDIVPS Y0, Y14, Y0
	VMOVUPS (DX), Y9
	VMOVUPS (R9), Y10
	SILUBWD(Y8, Y9, Y0, Y10, Y1, Y14)
	VMOVUPS Y0, (R8)
	VMOVUPS Y10, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R9
	ADDQ $32, R8
	ADDQ $32, DI
	SUBQ $8, CX
	JMP loop8

tail:
	TESTQ CX, CX
	JZ done
	TAILMASK256(Y13)
	VMASKMOVPS (SI), Y13, Y8
	VMASKMOVPS (DX), Y13, Y9
	VMASKMOVPS (R9), Y13, Y10
	VSUBPS Y8, Y15, Y0
	EXP256(Y0, Y1, Y2, Y3, Y4, Y5, Y6)
	VADDPS Y14, Y0, Y0
	VDIVPS Y0, Y14, Y0
	SILUBWD(Y8, Y9, Y0, Y10, Y1, Y14)
	VMASKMOVPS Y0, Y13, (R8)
	VMASKMOVPS Y10, Y13, (DI)

done:
	VZEROUPPER
	RET
