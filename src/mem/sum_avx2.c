/*
 * The AVX2 read loop of the memory bandwidth probe (bandwidth.c): four independent 256-bit
 * accumulators per 128 bytes, so the loop is bound by loads, not by the add latency. Compiled
 * with -mavx2 (file name) and only called when the CPU has AVX2.
 */
#include <immintrin.h>

#include "mem/mem.h"

uint64_t llm_mem_sum_avx2(const void *p, size_t n)
{
    const __m256i *v = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n / 32; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + i + 3));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
