//go:build amd64 && !purego

#include "textflag.h"

// Float AdamW on 16 (AVX-512) or 8 (AVX2) values at a time (see adamw.go):
// each product, quotient, square root and sum rounded to float32 in the
// order adamWSlices writes them, with no fused multiply-adds, so the
// results are its own bit for bit. Where both operands of an operation are
// NaN the result is the first source's: the first sources are those of
// the Go loop as compiled for amd64 (the gradient's term first in the
// moments' sums, p·decay first in the weight's difference), so even NaN
// payloads match.
//
// c (adamWConsts): gradScale 0, beta1 4, 1−beta1 8, beta2 12, 1−beta2 16,
// decay 20, stepSize 24, bc2Sqrt 28, eps 32; for the bf16 rounding the
// integers 1 at 36, 0x7fff at 40, 0x400000 at 44, 0xffff0000 at 48.
// mode: 0 no shadow, 1 sh gets the new weights, 2 sh gets them rounded to
// bf16 (to nearest even; a NaN stays a NaN, made quiet).

// func adamWAVX512(p, grad, m, v, sh *float32, n int, c *adamWConsts, mode int)
TEXT ·adamWAVX512(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ grad+8(FP), DX
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ sh+32(FP), DI
	MOVQ n+40(FP), CX
	MOVQ c+48(FP), AX
	MOVQ mode+56(FP), BX
	VBROADCASTSS 0(AX), Z16  // gradScale
	VBROADCASTSS 4(AX), Z17  // beta1
	VBROADCASTSS 8(AX), Z18  // 1 − beta1
	VBROADCASTSS 12(AX), Z19 // beta2
	VBROADCASTSS 16(AX), Z20 // 1 − beta2
	VBROADCASTSS 20(AX), Z21 // decay
	VBROADCASTSS 24(AX), Z22 // stepSize
	VBROADCASTSS 28(AX), Z23 // bc2Sqrt
	VBROADCASTSS 32(AX), Z24 // eps
	VPBROADCASTD 36(AX), Z25 // 1
	VPBROADCASTD 40(AX), Z26 // 0x7fff
	VPBROADCASTD 44(AX), Z27 // quiet bit
	VPBROADCASTD 48(AX), Z28 // high half

loop:
	CMPQ CX, $16
	JB done
	VMULPS (DX), Z16, Z0 // gi = gradScale·g
	// m = (1−beta1)·gi + m·beta1
	VMOVUPS (R8), Z1
	VMULPS Z17, Z1, Z1
	VMULPS Z0, Z18, Z2
	VADDPS Z1, Z2, Z1
	// v = ((1−beta2)·gi)·gi + v·beta2
	VMOVUPS (R9), Z3
	VMULPS Z19, Z3, Z3
	VMULPS Z0, Z20, Z4
	VMULPS Z0, Z4, Z4
	VADDPS Z3, Z4, Z3
	VMOVUPS Z1, (R8)
	VMOVUPS Z3, (R9)
	// p = decay·p − (stepSize·m)/(sqrt(v)/bc2Sqrt + eps)
	VMULPS (SI), Z21, Z5
	VMULPS Z1, Z22, Z6
	VSQRTPS Z3, Z7
	VDIVPS Z23, Z7, Z7
	VADDPS Z24, Z7, Z7
	VDIVPS Z7, Z6, Z6
	VSUBPS Z6, Z5, Z5
	VMOVUPS Z5, (SI)
	CMPQ BX, $1
	JB next
	JA bf16
	VMOVUPS Z5, (DI)
	JMP next

bf16:
	// (u + 0x7fff + (u>>16)&1) with the low half cleared; a NaN's
	// (u | quiet bit) instead
	VCMPPS $3, Z5, Z5, K1
	VPSRLD $16, Z5, Z8
	VPANDD Z25, Z8, Z8
	VPADDD Z8, Z5, Z8
	VPADDD Z26, Z8, Z8
	VPORD Z27, Z5, K1, Z8
	VPANDD Z28, Z8, Z8
	VMOVDQU32 Z8, (DI)

next:
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, DI
	SUBQ $16, CX
	JMP loop

done:
	VZEROUPPER
	RET

// The AVX2 kernel: 8 values at a time, the same operations with the same
// first sources; eps and the bf16 constants broadcast where they are used
// (16 registers).

// func adamWAVX2(p, grad, m, v, sh *float32, n int, c *adamWConsts, mode int)
TEXT ·adamWAVX2(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ grad+8(FP), DX
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ sh+32(FP), DI
	MOVQ n+40(FP), CX
	MOVQ c+48(FP), AX
	MOVQ mode+56(FP), BX
	VBROADCASTSS 0(AX), Y8   // gradScale
	VBROADCASTSS 4(AX), Y9   // beta1
	VBROADCASTSS 8(AX), Y10  // 1 − beta1
	VBROADCASTSS 12(AX), Y11 // beta2
	VBROADCASTSS 16(AX), Y12 // 1 − beta2
	VBROADCASTSS 20(AX), Y13 // decay
	VBROADCASTSS 24(AX), Y14 // stepSize
	VBROADCASTSS 28(AX), Y15 // bc2Sqrt

loop2:
	CMPQ CX, $8
	JB done2
	VMULPS (DX), Y8, Y0 // gi = gradScale·g
	VMOVUPS (R8), Y1
	VMULPS Y9, Y1, Y1
	VMULPS Y0, Y10, Y2
	VADDPS Y1, Y2, Y1
	VMOVUPS (R9), Y3
	VMULPS Y11, Y3, Y3
	VMULPS Y0, Y12, Y4
	VMULPS Y0, Y4, Y4
	VADDPS Y3, Y4, Y3
	VMOVUPS Y1, (R8)
	VMOVUPS Y3, (R9)
	VMULPS (SI), Y13, Y5
	VMULPS Y1, Y14, Y6
	VSQRTPS Y3, Y7
	VDIVPS Y15, Y7, Y7
	VBROADCASTSS 32(AX), Y2 // eps
	VADDPS Y2, Y7, Y7
	VDIVPS Y7, Y6, Y6
	VSUBPS Y6, Y5, Y5
	VMOVUPS Y5, (SI)
	CMPQ BX, $1
	JB next2
	JA bf162
	VMOVUPS Y5, (DI)
	JMP next2

bf162:
	VCMPPS $3, Y5, Y5, Y0 // NaN lanes
	VPSRLD $16, Y5, Y1
	VPBROADCASTD 36(AX), Y2
	VPAND Y2, Y1, Y1
	VPADDD Y1, Y5, Y1
	VPBROADCASTD 40(AX), Y2
	VPADDD Y2, Y1, Y1
	VPBROADCASTD 44(AX), Y2
	VPOR Y2, Y5, Y2
	VBLENDVPS Y0, Y2, Y1, Y1
	VPBROADCASTD 48(AX), Y2
	VPAND Y2, Y1, Y1
	VMOVDQU Y1, (DI)

next2:
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, DI
	SUBQ $8, CX
	JMP loop2

done2:
	VZEROUPPER
	RET
