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

// The AVX2 kernels: 8 values at a time, the same operations in the same
// order (vmaxps with the same operand roles, so a NaN keeps acc), and
// constants broadcast from memory where they are used (16 registers).

// func adam8UpdateAVX2(p, grad, mt, vt *float32, m8, v8 *byte, n int, qs, qu *[256]float32, c *adam8Consts, acc *[32]float32)
// As adam8UpdateAVX512; lanes 8–15 and 24–31 of acc get zeros.
TEXT ·adam8UpdateAVX2(SB), NOSPLIT, $0-88
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
	VPXOR Y12, Y12, Y12      // max |m|
	VPXOR Y13, Y13, Y13      // max v
	MOVL $0x7fffffff, DI
	MOVQ DI, X11
	VPBROADCASTD X11, Y11    // abs mask

u2loop:
	CMPQ CX, $8
	JB u2done
	VBROADCASTSS 0(AX), Y5
	VMULPS (DX), Y5, Y0      // gi = g·gradScale
	VPMOVZXBD (R8), Y1
	VPMOVZXBD (R9), Y2
	VPCMPEQD Y14, Y14, Y14
	VGATHERDPS Y14, (R10)(Y1*4), Y3
	VPCMPEQD Y15, Y15, Y15
	VGATHERDPS Y15, (R13)(Y2*4), Y4
	// m = beta1·(q·mScale) + (1−beta1)·gi
	VBROADCASTSS 36(AX), Y5
	VMULPS Y5, Y3, Y3
	VBROADCASTSS 4(AX), Y5
	VMULPS Y5, Y3, Y3
	VBROADCASTSS 8(AX), Y5
	VMULPS Y5, Y0, Y5
	VADDPS Y5, Y3, Y3
	// v = beta2·(q·vScale) + ((1−beta2)·gi)·gi
	VBROADCASTSS 40(AX), Y6
	VMULPS Y6, Y4, Y4
	VBROADCASTSS 12(AX), Y6
	VMULPS Y6, Y4, Y4
	VBROADCASTSS 16(AX), Y6
	VMULPS Y6, Y0, Y6
	VMULPS Y0, Y6, Y6
	VADDPS Y6, Y4, Y4
	VMOVUPS Y3, (R11)
	VMOVUPS Y4, (R12)
	VANDPS Y11, Y3, Y7
	VMAXPS Y12, Y7, Y12
	VMAXPS Y13, Y4, Y13
	// p = p·decay − (stepSize·m)/(sqrt(v)/bc2Sqrt + eps)
	VBROADCASTSS 20(AX), Y8
	VMULPS (SI), Y8, Y8
	VBROADCASTSS 24(AX), Y9
	VMULPS Y9, Y3, Y9
	VSQRTPS Y4, Y10
	VBROADCASTSS 28(AX), Y5
	VDIVPS Y5, Y10, Y10
	VBROADCASTSS 32(AX), Y5
	VADDPS Y5, Y10, Y10
	VDIVPS Y10, Y9, Y9
	VSUBPS Y9, Y8, Y8
	VMOVUPS Y8, (SI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $8, R8
	ADDQ $8, R9
	SUBQ $8, CX
	JMP u2loop

u2done:
	VPXOR Y0, Y0, Y0
	VMOVUPS Y12, (BX)
	VMOVUPS Y0, 32(BX)
	VMOVUPS Y13, 64(BX)
	VMOVUPS Y0, 96(BX)
	VZEROUPPER
	RET

// func adam8EncodeAVX2(dst *byte, src *float32, n int, scale float32, l *adam8Layout)
TEXT ·adam8EncodeAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y8
	MOVQ l+32(FP), AX
	MOVQ 0(AX), R8           // base
	MOVQ 8(AX), R9           // theta
	VPBROADCASTD 16(AX), Y10 // offset
	VPBROADCASTD 20(AX), Y11 // top
	VPBROADCASTD 24(AX), Y12 // signStride
	MOVL $0x7fff, DX
	MOVQ DX, X9
	VPBROADCASTD X9, Y9
	MOVL $0xff, DX
	MOVQ DX, X13
	VPBROADCASTD X13, Y13

e2loop:
	CMPQ CX, $8
	JB e2done
	VMULPS (SI), Y8, Y0      // x = src·scale
	VPSRLD $16, Y0, Y1
	VPAND Y9, Y1, Y1
	VPSUBD Y10, Y1, Y1
	VPXOR Y5, Y5, Y5
	VPMAXSD Y5, Y1, Y1
	VPMINSD Y11, Y1, Y1
	VPSRAD $31, Y0, Y2
	VPAND Y12, Y2, Y2
	VPADDD Y2, Y1, Y1
	VPCMPEQD Y14, Y14, Y14
	VGATHERDPS Y14, (R9)(Y1*4), Y3
	VPCMPEQD Y15, Y15, Y15
	VPGATHERDD Y15, (R8)(Y1*1), Y4
	VPAND Y13, Y4, Y4
	// code = base + (x > theta), 0 where x is NaN
	VCMPPS $0x1e, Y3, Y0, Y5
	VPSUBD Y5, Y4, Y4
	VCMPPS $0, Y0, Y0, Y6
	VPAND Y6, Y4, Y4
	VEXTRACTI128 $1, Y4, X7
	VPACKUSDW X7, X4, X4
	VPACKUSWB X4, X4, X4
	MOVQ X4, (DI)
	ADDQ $32, SI
	ADDQ $8, DI
	SUBQ $8, CX
	JMP e2loop

e2done:
	VZEROUPPER
	RET
