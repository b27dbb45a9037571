//go:build amd64 && !purego

#include "textflag.h"

// 8-bit AdamW on 16 values at a time (see adam8.go): the update of a block
// and the encoding of its moments, each product, quotient and sum rounded
// to float32 in the order compute.AdamW8bitSlices writes them, so the
// results are its own bit for bit.

// func adam8UpdateAVX512(p, grad, mt, vt *float32, m8, v8 *byte, n int, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)
// n is a multiple of 16. c: gradScale, beta1, 1−beta1, beta2, 1−beta2,
// decay, stepSize, bc2Sqrt, eps, mScale, vScale. acc gets each lane's
// largest |m| (lanes 0–15) and v (16–31), NaN left out.
TEXT ·adam8UpdateAVX512(SB), NOSPLIT, $0-88
	MOVQ p+0(FP), SI
	MOVQ grad+8(FP), DX
	MOVQ mt+16(FP), R11
	MOVQ vt+24(FP), R12
	MOVQ m8+32(FP), R8
	MOVQ v8+40(FP), R9
	MOVQ n+48(FP), CX
	MOVQ qs+56(FP), R10
	MOVQ qu+64(FP), R13
	MOVQ c+72(FP), AX
	MOVQ acc+80(FP), BX
	VBROADCASTSS 0(AX), Z20  // gradScale
	VBROADCASTSS 4(AX), Z21  // beta1
	VBROADCASTSS 8(AX), Z22  // 1 − beta1
	VBROADCASTSS 12(AX), Z23 // beta2
	VBROADCASTSS 16(AX), Z24 // 1 − beta2
	VBROADCASTSS 20(AX), Z25 // decay
	VBROADCASTSS 24(AX), Z26 // stepSize
	VBROADCASTSS 28(AX), Z27 // bc2Sqrt
	VBROADCASTSS 32(AX), Z28 // eps
	VBROADCASTSS 36(AX), Z29 // mScale
	VBROADCASTSS 40(AX), Z30 // vScale
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	VPXORD Z18, Z18, Z18     // max |m|
	VPXORD Z19, Z19, Z19     // max v

uloop:
	CMPQ CX, $16
	JB udone
	VMULPS (DX), Z20, Z0     // gi = g·gradScale
	VPMOVZXBD (R8), Z1
	VPMOVZXBD (R9), Z2
	KXNORW K1, K1, K1
	VGATHERDPS (R10)(Z1*4), K1, Z3
	KXNORW K2, K2, K2
	VGATHERDPS (R13)(Z2*4), K2, Z4
	// m = beta1·(q·mScale) + (1−beta1)·gi
	VMULPS Z29, Z3, Z3
	VMULPS Z21, Z3, Z3
	VMULPS Z22, Z0, Z5
	VADDPS Z5, Z3, Z3
	// v = beta2·(q·vScale) + ((1−beta2)·gi)·gi
	VMULPS Z30, Z4, Z4
	VMULPS Z23, Z4, Z4
	VMULPS Z24, Z0, Z6
	VMULPS Z0, Z6, Z6
	VADDPS Z6, Z4, Z4
	VMOVUPS Z3, (R11)
	VMOVUPS Z4, (R12)
	// acc = |m| > acc ? |m| : acc (a NaN keeps acc: vmaxps returns its
	// second source then)
	VPANDD Z31, Z3, Z7
	VMAXPS Z18, Z7, Z18
	VMAXPS Z19, Z4, Z19
	// p = p·decay − (stepSize·m)/(sqrt(v)/bc2Sqrt + eps)
	VMULPS (SI), Z25, Z8
	VMULPS Z26, Z3, Z9
	VSQRTPS Z4, Z10
	VDIVPS Z27, Z10, Z10
	VADDPS Z28, Z10, Z10
	VDIVPS Z10, Z9, Z9
	VSUBPS Z9, Z8, Z8
	VMOVUPS Z8, (SI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $16, R8
	ADDQ $16, R9
	SUBQ $16, CX
	JMP uloop

udone:
	VMOVUPS Z18, (BX)
	VMOVUPS Z19, 64(BX)
	VZEROUPPER
	RET

// func adam8EncodeAVX512(dst *byte, src *float32, n int, scale float32, l *adam8Layout)
// dst[i] = the code of src[i]·scale (0 for NaN); n is a multiple of 16.
// l: base, theta, then offset, top, signStride as int32.
TEXT ·adam8EncodeAVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Z20
	MOVQ l+32(FP), AX
	MOVQ 0(AX), R8           // base
	MOVQ 8(AX), R9           // theta
	VPBROADCASTD 16(AX), Z22 // offset
	VPBROADCASTD 20(AX), Z23 // top
	VPBROADCASTD 24(AX), Z24 // signStride
	MOVL $0x7fff, AX
	VPBROADCASTD AX, Z21
	MOVL $0xff, AX
	VPBROADCASTD AX, Z25
	MOVL $1, AX
	VPBROADCASTD AX, Z26
	VPXORD Z27, Z27, Z27

eloop:
	CMPQ CX, $16
	JB edone
	VMULPS (SI), Z20, Z0     // x = src·scale
	// k = sign·signStride + min(max(top bits − offset, 0), top)
	VPSRLD $16, Z0, Z1
	VPANDD Z21, Z1, Z1
	VPSUBD Z22, Z1, Z1
	VPMAXSD Z27, Z1, Z1
	VPMINSD Z23, Z1, Z1
	VPSRAD $31, Z0, Z2
	VPANDD Z24, Z2, Z2
	VPADDD Z2, Z1, Z1
	KXNORW K1, K1, K1
	VGATHERDPS (R9)(Z1*4), K1, Z3
	KXNORW K2, K2, K2
	VPGATHERDD (R8)(Z1*1), K2, Z4
	VPANDD Z25, Z4, Z4
	// code = base + (x > theta), 0 where x is NaN
	VCMPPS $0x1e, Z3, Z0, K3
	VPADDD Z26, Z4, K3, Z4
	VCMPPS $0, Z0, Z0, K4
	VMOVDQA32.Z Z4, K4, Z4
	VPMOVDB Z4, (DI)
	ADDQ $64, SI
	ADDQ $16, DI
	SUBQ $16, CX
	JMP eloop

edone:
	VZEROUPPER
	RET
