//go:build amd64 && !purego

#include "textflag.h"

// func widenBF16AVX(dst *float32, src *uint16, blocks int)
// dst[i] = float32 of the bfloat16 bits src[i] (the bits shifted into the
// high half) for i < 16·blocks: two loads of eight words per iteration.
TEXT ·widenBF16AVX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), CX
	TESTQ CX, CX
	JZ wdone

wloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ wloop

wdone:
	VZEROUPPER
	RET
