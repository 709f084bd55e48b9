/*
 * quants_k — scalar reference for the K-quants (256-element super-blocks): Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K and the Q8_K activation format.
 *
 * Each format first unpacks a block's quants into a plain array in element order (the
 * *_unpack helpers spell out the bit layout once); dequantize and dot product then read
 * that array. Quantizers reproduce ggml's reference (no importance matrix) algorithms:
 * make_qkx2_quants (scale + min search, Q2_K/Q4_K/Q5_K), make_q3_quants (Q3_K) and
 * make_qx_quants (Q6_K), followed by 6/4-bit quantization of the sub-block scales.
 *
 * Q8_K activations: ggml's x86 build uses quantize_row_q8_K_ref on every ISA, so there is
 * one algorithm here: iscale = -127/max with max the signed value of largest magnitude,
 * nearest_int (half to even), clamp to 127, bsums = sums of each 16 quants.
 */
#include "kernels/blocks.h"

#include <math.h>
#include <string.h>

#define H2F llm_fp16_to_fp32
#define F2H llm_fp32_to_fp16
#define MAXI(a, b) ((a) > (b) ? (a) : (b))
#define MINI(a, b) ((a) < (b) ? (a) : (b))

/* ---- unpacking: quant of element e (0..255) in element order ------------------------------- */

/* Q2_K/Q3_K low bits: each 128-element half uses 32 bytes; element 32*j + l of the half sits
 * at bits 2j..2j+1 of byte l. */
static int low2(const uint8_t *qs, int e)
{
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

static void q2_K_unpack(const block_q2_K *b, uint8_t q[QK_K])
{
    for (int e = 0; e < QK_K; e++)
        q[e] = (uint8_t)low2(b->qs, e);
}

/* Q3_K: hmask byte e%32, bit e/32 is the third bit, set meaning "no -4 offset". */
static void q3_K_unpack(const block_q3_K *b, int8_t q[QK_K])
{
    for (int e = 0; e < QK_K; e++) {
        int high = (b->hmask[e % 32] >> (e / 32)) & 1;
        q[e] = (int8_t)(low2(b->qs, e) - (high ? 0 : 4));
    }
}

/* Q4_K: each 64 elements use 32 bytes, low nibbles first then high nibbles. */
static void q4_K_unpack(const block_q4_K *b, uint8_t q[QK_K])
{
    for (int c = 0; c < QK_K / 64; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 0xF;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
    }
}

/* Q5_K: as Q4_K; the fifth bit of element 32*j + l is bit j of qh[l]. */
static void q5_K_unpack(const block_q5_K *b, uint8_t q[QK_K])
{
    for (int c = 0; c < QK_K / 64; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0xF) | (((b->qh[l] >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4));
        }
    }
}

/* Q6_K: per 128-element half, ql holds 64 bytes (elements l and l+32 in low nibbles, l+64
 * and l+96 in high nibbles) and qh 32 bytes (2 bits each for l, l+32, l+64, l+96). */
static void q6_K_unpack(const block_q6_K *b, int8_t q[QK_K])
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* Packs 2-bit values (0..3) of 256 elements into the Q2_K/Q3_K qs layout. */
static void pack_low2(const uint8_t L[QK_K], uint8_t qs[QK_K / 4])
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            qs[32 * h + l] = (uint8_t)(L[128 * h + l] | (L[128 * h + l + 32] << 2) | (L[128 * h + l + 64] << 4) |
                                       (L[128 * h + l + 96] << 6));
}

/* Packs 8 6-bit scales and mins into the 12-byte Q4_K/Q5_K layout. */
static void pack_scale_min_k4(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[12])
{
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* ---- ggml's reference searches ------------------------------------------------------------- */

/* Fits x ~ scale * L - min (L in 0..nmax, min >= 0) minimizing weighted error: start from the
 * min/max grid, then try nstep+1 stretched grids solving the 2x2 least squares for each. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = llm_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = llm_nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

#define GROUP_MAX_EPS 1e-15f

/* The value of largest magnitude, with its sign (first one on ties); *amax gets |value|. */
static float signed_absmax_k(int n, const float *x, float *amax)
{
    float max = 0;
    *amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > *amax) {
            *amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* One rounding pass of the symmetric fits: l = round(iscale * x) clamped to [-nmax, nmax-1],
 * stored as l + offset when L is given, and the x^2-weighted sums sum(w*x*l), sum(w*l*l)
 * that make the least-squares scale sumlx / suml2. */
static void symmetric_round(int n, int nmax, float iscale, const float *x, int8_t *L, int offset, float *sumlx,
                            float *suml2)
{
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = llm_nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        if (L)
            L[i] = (int8_t)(l + offset);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* Symmetric fit x ~ scale * (L - nmax), L - nmax in [-nmax, nmax-1], weights x^2; tries 18
 * perturbed scales around -nmax/max and keeps the best weighted least-squares one. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    float max = signed_absmax_k(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    symmetric_round(n, nmax, -nmax / max, x, L, nmax, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        float iscale = -(nmax + 0.1f * is) / max;
        symmetric_round(n, nmax, iscale, x, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            symmetric_round(n, nmax, iscale, x, L, nmax, &sumlx, &suml2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's symmetric fit: start at -nmax/max, then coordinate descent on each L (5 rounds),
 * weights x^2. Returns the scale; L holds values + nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    float max = signed_absmax_k(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    symmetric_round(n, nmax, -nmax / max, x, L, 0, &sumlx, &suml2);
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = llm_nearest_int(x[i] * sl2 / slx);
                new_l = MAXI(-nmax, MINI(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- integer dot shared by Q3_K and Q6_K: 16 groups of 16 signed quants, one signed scale each */

static int dot_16_groups(const int8_t q[QK_K], const int8_t sc[QK_K / 16], const int8_t *yqs)
{
    int isum = 0;
    for (int g = 0; g < QK_K / 16; g++) {
        int gs = 0;
        for (int l = 0; l < 16; l++)
            gs += q[16 * g + l] * yqs[16 * g + l];
        isum += sc[g] * gs;
    }
    return isum;
}

/* ---- Q2_K ---------------------------------------------------------------------------------- */

void llm_dequant_q2_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q2_K *b = src;
    uint8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(b[i].d), dmin = H2F(b[i].dmin);
        q2_K_unpack(&b[i], q);
        for (int g = 0; g < QK_K / 16; g++) {
            float dl = d * (b[i].scales[g] & 0xF), ml = dmin * (b[i].scales[g] >> 4);
            for (int l = 0; l < 16; l++)
                dst[16 * g + l] = dl * q[16 * g + l] - ml;
        }
    }
}

void llm_quant_q2_K_ref(const float *src, void *dst, int64_t n)
{
    block_q2_K *y = dst;
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        const float *x = src;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)llm_nearest_int(iscale * scales[j]);
            y[i].d = F2H(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = F2H(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)(llm_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = F2H(max_min / q4scale);
        } else {
            y[i].dmin = F2H(0.f);
        }
        /* requantize against the rounded scales actually stored */
        for (int j = 0; j < QK_K / 16; j++) {
            float d = H2F(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d)
                continue;
            float dm = H2F(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                int q = llm_nearest_int((x[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)MAXI(0, MINI(3, q));
            }
        }
        pack_low2(L, y[i].qs);
    }
}

void llm_vec_dot_q2_K_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    uint8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q2_K_unpack(&x[i], q);
        int isum = 0, summs = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int gs = 0;
            for (int l = 0; l < 16; l++)
                gs += q[16 * g + l] * y[i].qs[16 * g + l];
            isum += (x[i].scales[g] & 0xF) * gs;
            summs += (x[i].scales[g] >> 4) * y[i].bsums[g];
        }
        float dall = y[i].d * H2F(x[i].d), dmin = y[i].d * H2F(x[i].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* ---- Q3_K ---------------------------------------------------------------------------------- */

void llm_dequant_q3_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q3_K *b = src;
    int8_t q[QK_K], sc[16];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(b[i].d);
        q3_K_unpack(&b[i], q);
        llm_q3_K_scales(b[i].scales, sc);
        for (int g = 0; g < QK_K / 16; g++)
            for (int l = 0; l < 16; l++)
                dst[16 * g + l] = d * sc[g] * q[16 * g + l];
    }
}

void llm_quant_q3_K_ref(const float *src, void *dst, int64_t n)
{
    block_q3_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        const float *x = src;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = MAXI(-32, MINI(31, llm_nearest_int(iscale * scales[j]))) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = F2H(1 / iscale);
        } else {
            y[i].d = F2H(0.f);
        }
        int8_t sc[16];
        llm_q3_K_scales(y[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++) {
            float d = H2F(y[i].d) * sc[j];
            if (!d)
                continue;
            for (int l = 0; l < 16; l++) {
                int q = llm_nearest_int(x[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(MAXI(-4, MINI(3, q)) + 4);
            }
        }
        /* values 0..7: bit 2 goes to hmask (byte e%32, bit e/32), bits 0-1 to qs */
        uint8_t low[QK_K];
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 3)
                y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            low[e] = (uint8_t)(L[e] & 3);
        }
        pack_low2(low, y[i].qs);
    }
}

void llm_vec_dot_q3_K_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    int8_t q[QK_K], sc[16];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q3_K_unpack(&x[i], q);
        llm_q3_K_scales(x[i].scales, sc);
        sum += H2F(x[i].d) * y[i].d * (float)dot_16_groups(q, sc, y[i].qs);
    }
    *s = sum;
}

/* ---- Q4_K / Q5_K (shared: 8 sub-blocks of 32 with 6-bit scale and min) --------------------- */

/* ggml's quantize_row_q{4,5}_K_ref minus the bit packing: fills L (0..nmax) for 256 elements,
 * the packed 12 scale bytes, d and dmin. */
static void quant_k_scale_min(const float *x, int nmax, float rmin, int nstep, uint8_t L[QK_K], uint8_t packed[12],
                              llm_half *dh, llm_half *dminh)
{
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        ls[j] = (uint8_t)MINI(63, (uint8_t)llm_nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)MINI(63, (uint8_t)llm_nearest_int(inv_min * mins[j]));
    }
    pack_scale_min_k4(ls, lm, packed);
    *dh = F2H(max_scale / 63.f);
    *dminh = F2H(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        llm_get_scale_min_k4(j, packed, &sc, &m);
        float d = H2F(*dh) * sc;
        if (!d)
            continue;
        float dm = H2F(*dminh) * m;
        for (int l = 0; l < 32; l++) {
            int q = llm_nearest_int((x[32 * j + l] + dm) / d);
            L[32 * j + l] = (uint8_t)MAXI(0, MINI(nmax, q));
        }
    }
}

/* y = d*sc*q - dmin*m over 8 sub-blocks of 32, q already unpacked. */
static void dequant_k_scale_min(const uint8_t q[QK_K], const uint8_t packed[12], float d, float dmin, float *dst)
{
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        llm_get_scale_min_k4(j, packed, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        for (int l = 0; l < 32; l++)
            dst[32 * j + l] = d1 * q[32 * j + l] - m1;
    }
}

/* One super-block's contribution: d*sum(sc_j * q.y) - dmin*sum(m_j * bsums). */
static float dot_k_scale_min(const uint8_t q[QK_K], const uint8_t packed[12], llm_half d, llm_half dmin,
                             const block_q8_K *y)
{
    int sumi = 0, summ = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        llm_get_scale_min_k4(j, packed, &sc, &m);
        int s = 0;
        for (int l = 0; l < 32; l++)
            s += q[32 * j + l] * y->qs[32 * j + l];
        sumi += sc * s;
        summ += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return y->d * H2F(d) * (float)sumi - y->d * H2F(dmin) * (float)summ;
}

void llm_dequant_q4_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q4_K *b = src;
    uint8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        q4_K_unpack(&b[i], q);
        dequant_k_scale_min(q, b[i].scales, H2F(b[i].d), H2F(b[i].dmin), dst);
    }
}

void llm_quant_q4_K_ref(const float *src, void *dst, int64_t n)
{
    block_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        quant_k_scale_min(src, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int c = 0; c < QK_K / 64; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void llm_vec_dot_q4_K_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    uint8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q4_K_unpack(&x[i], q);
        sum += dot_k_scale_min(q, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    *s = sum;
}

void llm_dequant_q5_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q5_K *b = src;
    uint8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        q5_K_unpack(&b[i], q);
        dequant_k_scale_min(q, b[i].scales, H2F(b[i].d), H2F(b[i].dmin), dst);
    }
}

void llm_quant_q5_K_ref(const float *src, void *dst, int64_t n)
{
    block_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        quant_k_scale_min(src, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < QK_K / 64; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                y[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            }
        }
    }
}

void llm_vec_dot_q5_K_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_K *x = w;
    const block_q8_K *y = act;
    uint8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q5_K_unpack(&x[i], q);
        sum += dot_k_scale_min(q, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    *s = sum;
}

/* ---- Q6_K ---------------------------------------------------------------------------------- */

void llm_dequant_q6_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q6_K *b = src;
    int8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = H2F(b[i].d);
        q6_K_unpack(&b[i], q);
        for (int e = 0; e < QK_K; e++)
            dst[e] = d * b[i].scales[e / 16] * q[e];
    }
}

void llm_quant_q6_K_ref(const float *src, void *dst, int64_t n)
{
    block_q6_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        const float *x = src;
        float max_scale = 0, max_abs_scale = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            scales[g] = make_qx_quants(16, 32, x + 16 * g, L + 16 * g);
            if (fabsf(scales[g]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[g]);
                max_scale = scales[g];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = F2H(1 / iscale);
        for (int g = 0; g < QK_K / 16; g++)
            y[i].scales[g] = (int8_t)MINI(127, llm_nearest_int(iscale * scales[g]));
        for (int g = 0; g < QK_K / 16; g++) {
            float d = H2F(y[i].d) * y[i].scales[g];
            if (!d)
                continue;
            for (int l = 0; l < 16; l++) {
                int q = llm_nearest_int(x[16 * g + l] / d);
                L[16 * g + l] = (int8_t)(MAXI(-32, MINI(31, q)) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

void llm_vec_dot_q6_K_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    int8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6_K_unpack(&x[i], q);
        sum += H2F(x[i].d) * y[i].d * (float)dot_16_groups(q, x[i].scales, y[i].qs);
    }
    *s = sum;
}

/* ---- Q8_K ---------------------------------------------------------------------------------- */

void llm_dequant_q8_K_scalar(const void *src, float *dst, int64_t n)
{
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int e = 0; e < QK_K; e++)
            dst[e] = b[i].d * b[i].qs[e];
}

void llm_quant_q8_K_ref(const float *src, void *dst, int64_t n)
{
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        const float *x = src;
        float max = 0, amax = 0;
        for (int e = 0; e < QK_K; e++) {
            if (fabsf(x[e]) > amax) {
                amax = fabsf(x[e]);
                max = x[e];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]); /* ggml leaves bsums stale; zero is what it means */
            continue;
        }
        /* -127/max (not -128/max) keeps every quant in [-127, 127] */
        const float iscale = -127.f / max;
        for (int e = 0; e < QK_K; e++)
            y[i].qs[e] = (int8_t)MINI(127, llm_nearest_int(iscale * x[e]));
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void llm_act_q8_K_scalar(const float *x, void *dst, int64_t n)
{
    llm_quant_q8_K_ref(x, dst, n);
}
