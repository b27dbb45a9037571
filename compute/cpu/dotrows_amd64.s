//go:build amd64 && !purego

#include "textflag.h"

// func dotRowsAVX2(a, b *float32, ldb, n, rows int, out *float32)
// out[r] = Σ a[i]·b[r·ldb+i] over i < n (a multiple of 8) for r < rows, each
// row summed exactly as dotAVX2 sums it (the same instructions in the same
// order), so the results are dotAVX2's bit for bit.
TEXT ·dotRowsAVX2(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ ldb+16(FP), R8
	SHLQ $2, R8
	MOVQ n+24(FP), CX
	MOVQ rows+32(FP), R9
	MOVQ out+40(FP), R10
	TESTQ R9, R9
	JZ rowsdone

rowsloop:
	MOVQ SI, AX
	MOVQ DI, DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ CX, BX
	SHRQ $5, BX
	JZ rowstail

rowsloop32:
	VMOVUPS (AX), Y4
	VMOVUPS 32(AX), Y5
	VMOVUPS 64(AX), Y6
	VMOVUPS 96(AX), Y7
	VFMADD231PS (DX), Y4, Y0
	VFMADD231PS 32(DX), Y5, Y1
	VFMADD231PS 64(DX), Y6, Y2
	VFMADD231PS 96(DX), Y7, Y3
	ADDQ $128, AX
	ADDQ $128, DX
	DECQ BX
	JNZ rowsloop32

rowstail:
	MOVQ CX, BX
	ANDQ $31, BX
	SHRQ $3, BX
	JZ rowsreduce

rowsloop8:
	VMOVUPS (AX), Y4
	VFMADD231PS (DX), Y4, Y0
	ADDQ $32, AX
	ADDQ $32, DX
	DECQ BX
	JNZ rowsloop8

rowsreduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (R10)
	ADDQ $4, R10
	ADDQ R8, DI
	DECQ R9
	JNZ rowsloop

rowsdone:
	VZEROUPPER
	RET

// func dotRowsBF16AVX2(a *float32, b *uint16, ldb, n, rows int, out *float32)
// dotRowsAVX2 with b holding bfloat16 bits, widened to float32 on load (an
// exact conversion), so each row's sum is dotAVX2's over the widened row.
TEXT ·dotRowsBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ ldb+16(FP), R8
	SHLQ $1, R8
	MOVQ n+24(FP), CX
	MOVQ rows+32(FP), R9
	MOVQ out+40(FP), R10
	TESTQ R9, R9
	JZ bfrowsdone

bfrowsloop:
	MOVQ SI, AX
	MOVQ DI, DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ CX, BX
	SHRQ $5, BX
	JZ bfrowstail

bfrowsloop32:
	VMOVUPS (AX), Y4
	VMOVUPS 32(AX), Y5
	VMOVUPS 64(AX), Y6
	VMOVUPS 96(AX), Y7
	VPMOVZXWD (DX), Y8
	VPMOVZXWD 16(DX), Y9
	VPMOVZXWD 32(DX), Y10
	VPMOVZXWD 48(DX), Y11
	VPSLLD $16, Y8, Y8
	VPSLLD $16, Y9, Y9
	VPSLLD $16, Y10, Y10
	VPSLLD $16, Y11, Y11
	VFMADD231PS Y8, Y4, Y0
	VFMADD231PS Y9, Y5, Y1
	VFMADD231PS Y10, Y6, Y2
	VFMADD231PS Y11, Y7, Y3
	ADDQ $128, AX
	ADDQ $64, DX
	DECQ BX
	JNZ bfrowsloop32

bfrowstail:
	MOVQ CX, BX
	ANDQ $31, BX
	SHRQ $3, BX
	JZ bfrowsreduce

bfrowsloop8:
	VMOVUPS (AX), Y4
	VPMOVZXWD (DX), Y8
	VPSLLD $16, Y8, Y8
	VFMADD231PS Y8, Y4, Y0
	ADDQ $32, AX
	ADDQ $16, DX
	DECQ BX
	JNZ bfrowsloop8

bfrowsreduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, (R10)
	ADDQ $4, R10
	ADDQ R8, DI
	DECQ R9
	JNZ bfrowsloop

bfrowsdone:
	VZEROUPPER
	RET
