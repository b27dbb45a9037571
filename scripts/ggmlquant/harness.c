// harness quantizes float32 values with ggml's reference quantizers, so that
// gotune's GGUF encoders can be compared with llama.cpp's byte for byte
// (gguf.TestQuantMatchesGGMLHarness). It is a development tool, not part of
// gotune, and links against ggml's own ggml-quants.c:
//
//   git clone https://github.com/ggml-org/ggml && cd ggml
//   gcc -O2 -std=c11 -DNDEBUG -c src/ggml-quants.c -Iinclude -Isrc -Isrc/ggml-cpu -o /tmp/ggq.o
//   gcc -O2 -std=c11 path/to/harness.c /tmp/ggq.o -lm -o /tmp/harness
//   GGML_QUANT_HARNESS=/tmp/harness go test ./gguf -run Harness -v
//
// -DNDEBUG matches a release build of llama-quantize (ggml's nearest_int
// asserts its range otherwise). Usage: harness q8_0|q4_0|q4k|q6k in out, in
// holding little-endian float32 values, out receiving the blocks.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);

// ggml-quants.c refers to these from ggml.c; the reference quantizers never
// call them.
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}
size_t ggml_row_size(int type, int64_t n) { abort(); }
size_t ggml_type_size(int type) { abort(); }
const char *ggml_type_name(int type) { return "?"; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s q8_0|q4_0|q4k|q6k in out\n", argv[0]);
        return 2;
    }
    struct { const char *name; int values, bytes; void (*quant)(const float *, void *, int64_t); } types[] = {
        {"q8_0", 32, 34, quantize_row_q8_0_ref},
        {"q4_0", 32, 18, quantize_row_q4_0_ref},
        {"q4k", 256, 144, quantize_row_q4_K_ref},
        {"q6k", 256, 210, quantize_row_q6_K_ref},
    };
    int t = -1;
    for (int i = 0; i < 4; i++) {
        if (strcmp(argv[1], types[i].name) == 0) t = i;
    }
    if (t < 0) {
        fprintf(stderr, "unknown type %s\n", argv[1]);
        return 2;
    }
    FILE *in = fopen(argv[2], "rb");
    if (!in) { perror(argv[2]); return 1; }
    fseek(in, 0, SEEK_END);
    long n = ftell(in) / 4;
    fseek(in, 0, SEEK_SET);
    float *x = malloc(n * sizeof(float));
    if (fread(x, sizeof(float), n, in) != (size_t)n) { perror("read"); return 1; }
    fclose(in);
    if (n % types[t].values) { fprintf(stderr, "%ld values are not whole blocks\n", n); return 1; }
    long blocks = n / types[t].values;
    unsigned char *y = calloc(blocks, types[t].bytes);
    types[t].quant(x, y, n);
    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(y, types[t].bytes, blocks, out) != (size_t)blocks) { perror(argv[3]); return 1; }
    fclose(out);
    return 0;
}
