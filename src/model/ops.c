/*
 * ops — scalar element-wise ops of the forward pass, written to follow ggml's CPU ops step by
 * step (see ops.h). They are cheap next to the matrix multiplications (O(n) per token against
 * O(n^2)), so they stay scalar and readable; the compiler vectorises the simple loops.
 */
#include <math.h>

#include "model/ops.h"

void llm_op_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w)
        for (int i = 0; i < n; i++)
            out[i] = (x[i] * scale) * w[i];
    else
        for (int i = 0; i < n; i++)
            out[i] = x[i] * scale;
}

void llm_op_rope_cache(float *cs, float pos, int n_rot, float base, float freq_scale)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = pos;
    for (int i = 0; i < n_rot / 2; i++) {
        const float t = freq_scale * theta;
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void llm_op_rope(float *x, const float *cs, int n_rot, bool neox)
{
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + half] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void llm_op_softmax(float *s, int n, float scale)
{
    float max = -INFINITY;
    for (int i = 0; i < n; i++) {
        s[i] *= scale;
        if (s[i] > max)
            max = s[i];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(s[i] - max);
        s[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++)
        s[i] *= inv;
}

void llm_op_swiglu(float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        const float g = a[i];
        a[i] = (g / (1.0f + expf(-g))) * b[i];
    }
}

void llm_op_add(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += x[i];
}

bool llm_ops_have_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}
