// One decoding step of one sequence through a Llama-family decoder with bf16 weights, on a CPU.
//
// At batch 1 a decoding step reads every weight once and does little else, so its speed is the speed at which
// the weights stream from memory. This step keeps the whole layer stack in one native call: matrix-vector
// products that read the weights with software prefetching (AVX-512 BF16 dot products where the compiler
// targets them, plain loops otherwise), and the norms, rotary embedding, cache write, attention, activation and
// residual additions as loops over a few hundred floats, without a tensor operation per step of the layer.
// The residual stream stays in float32; activations are rounded to bf16 where a matrix product reads them
// (as the model's own bf16 forward does). Python side: raftlab/engine/one_row_step.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define RAFTLAB_AVX512_BF16 1
#endif

namespace {

using bf16 = uint16_t;

inline float to_f32(bf16 v) {
  uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline bf16 to_bf16(float f) {  // round to nearest even, as torch does
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16(u >> 16);
}

// y[o] (+)= sum_i w[o, i] * x[i] for o < rows; w row-major (rows x cols).
void dot_rows(const bf16* w, const bf16* x, float* y, int64_t rows, int64_t cols, bool accumulate) {
  int64_t o = 0;
#if RAFTLAB_AVX512_BF16
  if (cols % 32 == 0) {
    const int64_t chunks = cols / 32;
    // each row's line 8 KB ahead is requested into L2: a single core's loads alone keep too few lines in flight
    // to stream at the memory's read bandwidth; it runs past a matrix's end into the next one, harmlessly
    constexpr int64_t ahead = 4096;  // elements
    for (; o + 4 <= rows; o += 4) {
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      const bf16* r = w + o * cols;
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t at = c * 32;
        _mm_prefetch(reinterpret_cast<const char*>(r + at + ahead), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(r + cols + at + ahead), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(r + 2 * cols + at + ahead), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(r + 3 * cols + at + ahead), _MM_HINT_T1);
        const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + at);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(r + at), xv);
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(r + cols + at), xv);
        a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(r + 2 * cols + at), xv);
        a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(r + 3 * cols + at), xv);
      }
      const float s[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1), _mm512_reduce_add_ps(a2),
                          _mm512_reduce_add_ps(a3)};
      for (int j = 0; j < 4; ++j) y[o + j] = accumulate ? y[o + j] + s[j] : s[j];
    }
    for (; o < rows; ++o) {
      __m512 a = _mm512_setzero_ps();
      for (int64_t c = 0; c < chunks; ++c)
        a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(w + o * cols + c * 32),
                             (__m512bh)_mm512_loadu_si512(x + c * 32));
      const float s = _mm512_reduce_add_ps(a);
      y[o] = accumulate ? y[o] + s : s;
    }
    return;
  }
#endif
  for (; o < rows; ++o) {
    const bf16* r = w + o * cols;
    float s = 0.f;
    for (int64_t i = 0; i < cols; ++i) s += to_f32(r[i]) * to_f32(x[i]);
    y[o] = accumulate ? y[o] + s : s;
  }
}

#if RAFTLAB_AVX512_BF16
// 16 bf16 values from memory as float32.
inline __m512 load16(const bf16* v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v))), 16));
}
#endif

#if RAFTLAB_AVX512_BF16
// e^x of 16 floats x <= 0 (softmax scores less their maximum), Cephes' expf polynomial on a range reduced by ln 2
// (relative error ~1e-7); x below -87 (and -inf) gives exactly 0.
inline __m512 exp16(__m512 x) {
  const __m512 floor = _mm512_set1_ps(-87.f);
  const __mmask16 live = _mm512_cmp_ps_mask(x, floor, _CMP_GT_OQ);
  const __m512 xc = _mm512_max_ps(x, floor);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.f)));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}
#endif

// acc[i] += sum_t p[t] * values[t, i] for t < count, i < dim (values: rows of dim bf16 values). The AVX-512 path
// keeps 64 output values in registers across all the rows (two interleaved sets of accumulators).
void weighted_rows(const float* p, const bf16* values, int64_t count, int64_t dim, float* acc) {
  int64_t i = 0;
#if RAFTLAB_AVX512_BF16
  for (; i + 64 <= dim; i += 64) {
    __m512 a0 = _mm512_loadu_ps(acc + i), a1 = _mm512_loadu_ps(acc + i + 16), a2 = _mm512_loadu_ps(acc + i + 32),
           a3 = _mm512_loadu_ps(acc + i + 48);
    __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
    int64_t t = 0;
    for (; t + 2 <= count; t += 2) {
      const bf16* r0 = values + t * dim + i;
      const bf16* r1 = r0 + dim;
      const __m512 w0 = _mm512_set1_ps(p[t]), w1 = _mm512_set1_ps(p[t + 1]);
      a0 = _mm512_fmadd_ps(w0, load16(r0), a0);
      a1 = _mm512_fmadd_ps(w0, load16(r0 + 16), a1);
      a2 = _mm512_fmadd_ps(w0, load16(r0 + 32), a2);
      a3 = _mm512_fmadd_ps(w0, load16(r0 + 48), a3);
      b0 = _mm512_fmadd_ps(w1, load16(r1), b0);
      b1 = _mm512_fmadd_ps(w1, load16(r1 + 16), b1);
      b2 = _mm512_fmadd_ps(w1, load16(r1 + 32), b2);
      b3 = _mm512_fmadd_ps(w1, load16(r1 + 48), b3);
    }
    if (t < count) {
      const bf16* r0 = values + t * dim + i;
      const __m512 w0 = _mm512_set1_ps(p[t]);
      a0 = _mm512_fmadd_ps(w0, load16(r0), a0);
      a1 = _mm512_fmadd_ps(w0, load16(r0 + 16), a1);
      a2 = _mm512_fmadd_ps(w0, load16(r0 + 32), a2);
      a3 = _mm512_fmadd_ps(w0, load16(r0 + 48), a3);
    }
    _mm512_storeu_ps(acc + i, _mm512_add_ps(a0, b0));
    _mm512_storeu_ps(acc + i + 16, _mm512_add_ps(a1, b1));
    _mm512_storeu_ps(acc + i + 32, _mm512_add_ps(a2, b2));
    _mm512_storeu_ps(acc + i + 48, _mm512_add_ps(a3, b3));
  }
#endif
  for (; i < dim; ++i) {
    float sum = 0.f;
    for (int64_t t = 0; t < count; ++t) sum += p[t] * to_f32(values[t * dim + i]);
    acc[i] += sum;
  }
}

// The largest of count floats.
float max_of(const float* x, int64_t count) {
  float top = -INFINITY;
  int64_t t = 0;
#if RAFTLAB_AVX512_BF16
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (; t + 16 <= count; t += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + t));
  top = _mm512_reduce_max_ps(m);
#endif
  for (; t < count; ++t) top = std::max(top, x[t]);
  return top;
}

// In place: scores[t] = exp(scores[t] - top) for t < count; returns their sum.
float exp_shifted(float* scores, int64_t count, float top) {
  int64_t t = 0;
  float total = 0.f;
#if RAFTLAB_AVX512_BF16
  const __m512 shift = _mm512_set1_ps(top);
  __m512 sum = _mm512_setzero_ps();
  for (; t < count; t += 16) {
    const __mmask16 m = count - t >= 16 ? __mmask16(0xffff) : __mmask16((1u << (count - t)) - 1);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + t), shift));
    _mm512_mask_storeu_ps(scores + t, m, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
  }
  total = _mm512_reduce_add_ps(sum);
#else
  for (; t < count; ++t) total += (scores[t] = std::exp(scores[t] - top));
#endif
  return total;
}

// Softmax attention of one bf16 query over ``tokens`` keys/values (rows of ``dim`` bf16 values, contiguous):
// ``out`` (dim floats) receives the attention output, ``scores`` (tokens floats) is scratch.
void attend(const bf16* q, const bf16* keys, const bf16* values, int64_t tokens, int64_t dim, float scaling,
            float* scores, float* out) {
  dot_rows(keys, q, scores, tokens, dim, false);
  for (int64_t t = 0; t < tokens; ++t) scores[t] *= scaling;
  const float total = exp_shifted(scores, tokens, max_of(scores, tokens));
  std::fill(out, out + dim, 0.f);
  weighted_rows(scores, values, tokens, dim, out);
  for (int64_t i = 0; i < dim; ++i) out[i] /= total;
}

// y = w x for a (rows x cols) bf16 matrix, split over torch's intra-op threads in blocks of rows.
void gemv(const torch::Tensor& w, const bf16* x, float* y, bool accumulate) {
  const int64_t rows = w.size(0), cols = w.size(1);
  const bf16* wp = reinterpret_cast<const bf16*>(w.data_ptr<at::BFloat16>());
  constexpr int64_t block = 16;
  const int64_t grain = std::max<int64_t>(1, (1 << 17) / (block * cols * 2));  // >= 128 KB of weights a task
  at::parallel_for(0, (rows + block - 1) / block, grain, [&](int64_t b, int64_t e) {
    const int64_t r0 = b * block, r1 = std::min(rows, e * block);
    dot_rows(wp + r0 * cols, x, y + r0, r1 - r0, cols, accumulate);
  });
}

// bf16(x * rsqrt(mean(x^2) + eps) * weight): one rounding, like torch.nn.functional.rms_norm.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, bf16* out) {
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sq += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(sq / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(x[i] * inv * weight[i]);
}

// In place, per head of `dim` floats (Qwen3's q/k norms: the result stays float32).
void rms_norm_heads(float* x, const float* weight, int64_t heads, int64_t dim, double eps) {
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * dim;
    double sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sq += double(v[i]) * v[i];
    const float inv = float(1.0 / std::sqrt(sq / dim + eps));
    for (int64_t i = 0; i < dim; ++i) v[i] = v[i] * inv * weight[i];
  }
}

// transformers' rotate_half convention: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) over the two halves.
void rotate(float* x, int64_t heads, int64_t dim, const float* cos, const float* sin) {
  const int64_t half = dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

const float* f32(const torch::Tensor& t) { return t.numel() ? t.data_ptr<float>() : nullptr; }

// Every exported function checks what it reads or writes through raw pointers before touching it: a wrong
// argument is a RuntimeError in Python, never a read or write out of bounds.

// ``t`` is a contiguous CPU tensor of ``dtype`` and exactly ``shape``.
void expect(const torch::Tensor& t, const char* fn, const std::string& what, at::ScalarType dtype,
            c10::IntArrayRef shape) {
  const bool ok = t.defined() && t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous();
  TORCH_CHECK(ok && t.sizes() == shape, fn, ": ", what, " must be a contiguous CPU ", dtype, " tensor of shape ", shape,
              ", got ",
              t.defined() ? "" : "an undefined tensor", t.defined() && !t.is_contiguous() ? "non-contiguous " : "",
              t.defined() ? c10::str(t.device(), " ", t.scalar_type(), " ", t.sizes()) : "");
}

// Like expect, but an empty tensor (absent: no bias, no q/k norm) is accepted too.
void expect_optional(const torch::Tensor& t, const char* fn, const std::string& what, at::ScalarType dtype,
                     c10::IntArrayRef shape) {
  if (!t.defined() || t.numel() != 0) expect(t, fn, what, dtype, shape);
}

// ``t`` is a CPU tensor of ``dtype`` with ``dims`` dimensions (contiguity checked by the caller where assumed).
void expect_kind(const torch::Tensor& t, const char* fn, const char* what, at::ScalarType dtype, int64_t dims) {
  TORCH_CHECK(t.defined() && t.device().is_cpu() && t.scalar_type() == dtype && t.dim() == dims, fn, ": ", what,
              " must be a ", dims, "-D CPU ", dtype, " tensor, got ",
              t.defined() ? c10::str(t.dim(), "-D ", t.device(), " ", t.scalar_type()) : "an undefined tensor");
}

}  // namespace

// One new token through the model. ``layer_tensors``: 14 per layer, in this order: input norm weight (f32),
// q, k, v weights (bf16), q, k, v biases (f32, or empty), q-norm and k-norm weights (f32, or empty), o weight,
// post-attention norm weight (f32), gate, up, down weights (bf16). ``keys``/``values``: per layer, the cache
// buffers (1, kv_heads, capacity, head_dim) bf16; the new key and value are written at ``index`` and attention
// covers positions 0..index. Returns the float32 logits (1, vocab).
torch::Tensor step(int64_t token, int64_t position, int64_t index, const torch::Tensor& embed,
                   const torch::Tensor& inv_freq, double rope_scale, const std::vector<torch::Tensor>& layer_tensors,
                   const std::vector<torch::Tensor>& keys, const std::vector<torch::Tensor>& values,
                   const torch::Tensor& final_norm, const torch::Tensor& lm_head, int64_t heads, int64_t kv_heads,
                   int64_t head_dim, double eps, double scaling) {
  constexpr size_t per_layer = 14;
  constexpr const char* fn = "one_row_step";
  const auto bf = torch::kBFloat16, f = torch::kFloat32;
  TORCH_CHECK(layer_tensors.size() == per_layer * keys.size() && values.size() == keys.size(),
              "one_row_step: expected 14 tensors, a key and a value buffer per layer, got ", layer_tensors.size(),
              " tensors, ", keys.size(), " key and ", values.size(), " value buffers");
  TORCH_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && head_dim > 0 && head_dim % 2 == 0,
              "one_row_step: heads (", heads, ") must be a positive multiple of kv_heads (", kv_heads,
              ") and head_dim (", head_dim, ") positive and even");
  expect_kind(embed, fn, "embed", bf, 2);
  const int64_t hidden_size = embed.size(1), n_layers = int64_t(keys.size());
  expect(embed, fn, "embed", bf, {embed.size(0), hidden_size});
  TORCH_CHECK(token >= 0 && token < embed.size(0), "one_row_step: token id ", token, " out of range [0, ",
              embed.size(0), ")");
  const int64_t q_size = heads * head_dim, kv_size = kv_heads * head_dim, half = head_dim / 2;
  const int64_t group = heads / kv_heads, length = index + 1;
  expect(inv_freq, fn, "inv_freq", f, {half});
  expect(final_norm, fn, "final_norm", f, {hidden_size});
  expect_kind(lm_head, fn, "lm_head", bf, 2);
  expect(lm_head, fn, "lm_head", bf, {lm_head.size(0), hidden_size});

  if (n_layers) expect_kind(layer_tensors[11], fn, "layer 0 gate weight", bf, 2);
  const int64_t inter = n_layers ? layer_tensors[11].size(0) : 0;
  for (int64_t l = 0; l < n_layers; ++l) {
    const torch::Tensor* t = &layer_tensors[per_layer * l];
    const std::string which = "layer " + std::to_string(l) + " ";
    expect(t[0], fn, which + "input norm weight", f, {hidden_size});
    expect(t[1], fn, which + "q weight", bf, {q_size, hidden_size});
    expect(t[2], fn, which + "k weight", bf, {kv_size, hidden_size});
    expect(t[3], fn, which + "v weight", bf, {kv_size, hidden_size});
    expect_optional(t[4], fn, which + "q bias", f, {q_size});
    expect_optional(t[5], fn, which + "k bias", f, {kv_size});
    expect_optional(t[6], fn, which + "v bias", f, {kv_size});
    expect_optional(t[7], fn, which + "q norm weight", f, {head_dim});
    expect_optional(t[8], fn, which + "k norm weight", f, {head_dim});
    expect(t[9], fn, which + "o weight", bf, {hidden_size, q_size});
    expect(t[10], fn, which + "post-attention norm weight", f, {hidden_size});
    expect(t[11], fn, which + "gate weight (every layer the same MLP width)", bf, {inter, hidden_size});
    expect(t[12], fn, which + "up weight", bf, {inter, hidden_size});
    expect(t[13], fn, which + "down weight", bf, {hidden_size, inter});
    // the cache of one sequence: batch 1, room for the new position
    expect_kind(keys[l], fn, "every key buffer", bf, 4);
    const int64_t capacity = keys[l].size(2);
    TORCH_CHECK(index >= 0 && index < capacity, "one_row_step: the cache of layer ", l, " has no room at index ",
                index, " (capacity ", capacity, ")");
    expect(keys[l], fn, which + "key buffer (batch 1)", bf, {1, kv_heads, capacity, head_dim});
    expect(values[l], fn, which + "value buffer (batch 1)", bf, {1, kv_heads, capacity, head_dim});
  }

  // everything below reads only the checked buffers and no Python object: other Python threads run meanwhile
  py::gil_scoped_release no_gil;
  std::vector<float> h(hidden_size), qkv(q_size + 2 * kv_size), attn(q_size), cos(head_dim), sin(head_dim);
  std::vector<float> gate(inter), up(inter);
  std::vector<bf16> x(hidden_size), attn_b(q_size), act(inter);
  const bf16* row = reinterpret_cast<const bf16*>(embed.data_ptr<at::BFloat16>()) + token * hidden_size;
  for (int64_t i = 0; i < hidden_size; ++i) h[i] = to_f32(row[i]);
  const float* freq = inv_freq.data_ptr<float>();
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(position) * freq[i];
    cos[i] = cos[i + half] = std::cos(angle) * float(rope_scale);
    sin[i] = sin[i + half] = std::sin(angle) * float(rope_scale);
  }

  for (int64_t l = 0; l < n_layers; ++l) {
    const torch::Tensor* t = &layer_tensors[per_layer * l];
    rms_norm(h.data(), f32(t[0]), hidden_size, eps, x.data());
    float* q = qkv.data();
    float* k = q + q_size;
    float* v = k + kv_size;
    gemv(t[1], x.data(), q, false);
    gemv(t[2], x.data(), k, false);
    gemv(t[3], x.data(), v, false);
    for (int j = 0; j < 3; ++j)
      if (const float* b = f32(t[4 + j])) {
        float* dst = j == 0 ? q : (j == 1 ? k : v);
        const int64_t n = j == 0 ? q_size : kv_size;
        for (int64_t i = 0; i < n; ++i) dst[i] += b[i];
      }
    if (const float* qn = f32(t[7])) rms_norm_heads(q, qn, heads, head_dim, eps);
    if (const float* kn = f32(t[8])) rms_norm_heads(k, kn, kv_heads, head_dim, eps);
    rotate(q, heads, head_dim, cos.data(), sin.data());
    rotate(k, kv_heads, head_dim, cos.data(), sin.data());

    const int64_t capacity = keys[l].size(2);
    bf16* kc = reinterpret_cast<bf16*>(keys[l].data_ptr<at::BFloat16>());
    bf16* vc = reinterpret_cast<bf16*>(values[l].data_ptr<at::BFloat16>());
    for (int64_t g = 0; g < kv_heads; ++g)
      for (int64_t i = 0; i < head_dim; ++i) {
        kc[(g * capacity + index) * head_dim + i] = to_bf16(k[g * head_dim + i]);
        vc[(g * capacity + index) * head_dim + i] = to_bf16(v[g * head_dim + i]);
      }
    at::parallel_for(0, heads, 1, [&](int64_t h0, int64_t h1) {
      std::vector<float> scores(length);
      std::vector<bf16> qb(head_dim);
      for (int64_t hd = h0; hd < h1; ++hd) {
        const int64_t g = hd / group;
        for (int64_t i = 0; i < head_dim; ++i) qb[i] = to_bf16(q[hd * head_dim + i]);
        float* out = attn.data() + hd * head_dim;
        attend(qb.data(), kc + g * capacity * head_dim, vc + g * capacity * head_dim, length, head_dim,
               float(scaling), scores.data(), out);
        for (int64_t i = 0; i < head_dim; ++i) attn_b[hd * head_dim + i] = to_bf16(out[i]);
      }
    });
    gemv(t[9], attn_b.data(), h.data(), true);

    rms_norm(h.data(), f32(t[10]), hidden_size, eps, x.data());
    gemv(t[11], x.data(), gate.data(), false);
    gemv(t[12], x.data(), up.data(), false);
    for (int64_t i = 0; i < inter; ++i) {
      const float g = gate[i];
      act[i] = to_bf16(g / (1.f + std::exp(-g)) * up[i]);
    }
    gemv(t[13], act.data(), h.data(), true);
  }
  rms_norm(h.data(), final_norm.data_ptr<float>(), hidden_size, eps, x.data());
  auto logits = torch::empty({1, lm_head.size(0)}, torch::dtype(torch::kFloat32));
  gemv(lm_head, x.data(), logits.data_ptr<float>(), false);
  return logits;
}

// w x for a bf16 matrix (rows x cols) and a bf16 vector: float32 (rows,). The step's matrix-vector product, for
// tests and for measuring how fast it reads memory.
torch::Tensor matvec(const torch::Tensor& w, const torch::Tensor& x) {
  TORCH_CHECK(w.device().is_cpu() && w.dim() == 2 && w.scalar_type() == torch::kBFloat16 && w.is_contiguous(),
              "matvec: w must be a contiguous 2-D CPU bf16 tensor");
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 1 && x.scalar_type() == torch::kBFloat16 && x.is_contiguous() &&
              x.size(0) == w.size(1), "matvec: x must be a contiguous CPU bf16 vector of w.size(1) elements");
  auto y = torch::empty({w.size(0)}, torch::dtype(torch::kFloat32));
  gemv(w, reinterpret_cast<const bf16*>(x.data_ptr<at::BFloat16>()), y.data_ptr<float>(), false);
  return y;
}

// RMSNorm of every row of a bf16 tensor (..., n) with a float32 weight (n,): bf16, rounded once.
torch::Tensor rms_norm_rows(const torch::Tensor& x_in, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x_in.device().is_cpu() && x_in.scalar_type() == torch::kBFloat16 && x_in.dim() >= 1,
              "rms_norm_rows: x must be a CPU bf16 tensor of rows (..., n)");
  expect(weight, "rms_norm_rows", "weight", torch::kFloat32, {x_in.size(-1)});
  const auto x = x_in.contiguous();
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  auto out = torch::empty_like(x);
  const bf16* xp = reinterpret_cast<const bf16*>(x.data_ptr<at::BFloat16>());
  bf16* op = reinterpret_cast<bf16*>(out.data_ptr<at::BFloat16>());
  const float* w = weight.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const bf16* v = xp + r * n;
    bf16* o = op + r * n;
    int64_t i = 0;
#if RAFTLAB_AVX512_BF16
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
      const __m512 f = load16(v + i);
      acc = _mm512_fmadd_ps(f, f, acc);
    }
    float sq = _mm512_reduce_add_ps(acc);
#else
    float sq = 0.f;
#endif
    for (int64_t j = i; j < n; ++j) sq += to_f32(v[j]) * to_f32(v[j]);
    const float inv = 1.f / std::sqrt(sq / float(n) + float(eps));
    i = 0;
#if RAFTLAB_AVX512_BF16
    const __m512 s = _mm512_set1_ps(inv);
    for (; i + 16 <= n; i += 16) {
      const __m512 y = _mm512_mul_ps(_mm512_mul_ps(load16(v + i), s), _mm512_loadu_ps(w + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i), (__m256i)_mm512_cvtneps_pbh(y));
    }
#endif
    for (; i < n; ++i) o[i] = to_bf16(to_f32(v[i]) * inv * w[i]);
  }
  return out;
}

// The rotary embedding of the first ``heads`` heads of every row of a fused q/k/v product (rows, 1, width) bf16,
// with float32 cos/sin (rows, dim): (rows, heads, 1, dim) bf16, rounded once.
torch::Tensor rotary_heads(const torch::Tensor& qkv_in, const torch::Tensor& cos_in, const torch::Tensor& sin_in,
                           int64_t heads, int64_t dim) {
  TORCH_CHECK(qkv_in.device().is_cpu() && qkv_in.scalar_type() == torch::kBFloat16 && qkv_in.dim() >= 1 &&
              qkv_in.size(-1) > 0 && heads >= 0 && dim > 0 && dim % 2 == 0 && heads * dim <= qkv_in.size(-1),
              "rotary_heads: qkv must be CPU bf16 rows (..., width) holding at least heads x dim values, dim even");
  const auto qkv = qkv_in.contiguous();
  const int64_t width = qkv.size(-1), rows = qkv.numel() / width, half = dim / 2;
  expect_kind(cos_in, "rotary_heads", "cos", torch::kFloat32, 2);
  expect_kind(sin_in, "rotary_heads", "sin", torch::kFloat32, 2);
  TORCH_CHECK(cos_in.size(0) == rows && cos_in.size(1) == dim && sin_in.sizes() == cos_in.sizes(),
              "rotary_heads: cos and sin must be (rows, dim) = (", rows, ", ", dim, "), got ", cos_in.sizes(), " and ",
              sin_in.sizes());
  const auto cos = cos_in.contiguous(), sin = sin_in.contiguous();
  auto out = torch::empty({rows, heads, 1, dim}, qkv.options());
  const bf16* x = reinterpret_cast<const bf16*>(qkv.data_ptr<at::BFloat16>());
  bf16* o = reinterpret_cast<bf16*>(out.data_ptr<at::BFloat16>());
  const float* c = cos.data_ptr<float>();
  const float* sn = sin.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      const bf16* v = x + r * width + h * dim;
      bf16* w = o + (r * heads + h) * dim;
      const float* cr = c + r * dim;
      const float* sr = sn + r * dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = to_f32(v[i]), b = to_f32(v[i + half]);
        w[i] = to_bf16(a * cr[i] - b * sr[i]);
        w[i + half] = to_bf16(b * cr[i + half] + a * sr[i + half]);
      }
    }
  return out;
}

// Cascade attention's prompt keys, packed once per generation (raftlab/engine/cascade_attention.py): per prompt and
// key/value head, blocks of 16 keys as (dim / 2, 16, 2): lane i of a 32-bit pair holds key i's two adjacent values,
// so one AVX-512 BF16 dot-product instruction adds two dimensions of 16 keys' scores at once, without horizontal sums.
constexpr int64_t kKeyBlock = 16;

// scores[t] = (query . key_t) * scale + bias[t] for the blocks * 16 packed keys of one prompt and head. The AVX-512
// path works on four blocks at once: four independent chains of dot-product instructions instead of one.
void packed_scores(const bf16* packed, const bf16* query, const float* bias, int64_t blocks, int64_t dim, float scale,
                   float* scores) {
  const int64_t pairs = dim / 2, stride = pairs * 2 * kKeyBlock;  // bf16 values per block
  int64_t b = 0;
#if RAFTLAB_AVX512_BF16
  const __m512 sc = _mm512_set1_ps(scale);
  for (; b < blocks; b += 4) {
    const int64_t live = std::min<int64_t>(4, blocks - b);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const bf16* block = packed + b * stride;
    for (int64_t d = 0; d < pairs; ++d) {
      uint32_t pair;
      std::memcpy(&pair, query + 2 * d, 4);
      const __m512bh qv = (__m512bh)_mm512_set1_epi32(int(pair));
      for (int64_t j = 0; j < live; ++j)
        acc[j] = _mm512_dpbf16_ps(acc[j], (__m512bh)_mm512_loadu_si512(block + j * stride + d * 2 * kKeyBlock), qv);
    }
    for (int64_t j = 0; j < live; ++j)
      _mm512_storeu_ps(scores + (b + j) * kKeyBlock,
                       _mm512_fmadd_ps(acc[j], sc, _mm512_loadu_ps(bias + (b + j) * kKeyBlock)));
  }
#endif
  for (; b < blocks; ++b) {
    const bf16* block = packed + b * stride;
    for (int64_t i = 0; i < kKeyBlock; ++i) {
      float sum = 0.f;
      for (int64_t d = 0; d < pairs; ++d) {
        const bf16* pair = block + (d * kKeyBlock + i) * 2;
        sum += to_f32(pair[0]) * to_f32(query[2 * d]) + to_f32(pair[1]) * to_f32(query[2 * d + 1]);
      }
      scores[b * kKeyBlock + i] = sum * scale + bias[b * kKeyBlock + i];
    }
  }
}

// out[i] = bf16(x[i] * factor) for i < n, rounded to nearest even.
void scaled_to_bf16(const float* x, float factor, int64_t n, bf16* out) {
  int64_t i = 0;
#if RAFTLAB_AVX512_BF16
  const __m512 f = _mm512_set1_ps(factor);
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(x + i), f)));
#endif
  for (; i < n; ++i) out[i] = to_bf16(x[i] * factor);
}

// Cascade attention in one call (raftlab/engine/cascade_attention.py): every active row attends, with one softmax,
// over its prompt's keys/values (held once per prompt, shared by the prompt's n samples) and its own generated
// tokens. Work is split by (prompt, key/value head): a prompt's keys of one head are read from memory once for all
// the query heads of all its active samples, and stay in cache between them.
// query (rows, heads, 1, dim); own_key/own_value (buffer rows, kv_heads, tokens, dim), bf16 with contiguous rows
// of dim values; packed_key (prompts, kv_heads, blocks, dim / 2, 16, 2) bf16, contiguous (see kKeyBlock);
// prompt_value (prompts, kv_heads, prompt_len <= blocks * 16, dim) bf16 with contiguous token rows; prompt_bias
// (prompts, blocks * 16) float32, 0 where a prompt position is attended to and -inf elsewhere (a prompt's key
// blocks after its last attended position are skipped). slot (rows): each row's place in the prompts x n grid,
// distinct, in any order (rows join and leave as a continuous batch decodes); own_row (rows): the buffer row
// holding each row's own tokens; own_tokens (rows): how many of them it attends to (at least 1, at most tokens).
// Returns (rows, 1, heads, dim) bf16, rounded once.
torch::Tensor cascade_attention(const torch::Tensor& query, const torch::Tensor& own_key,
                                const torch::Tensor& own_value, const torch::Tensor& packed_key,
                                const torch::Tensor& prompt_value, const torch::Tensor& prompt_bias,
                                const torch::Tensor& slot_in, const torch::Tensor& own_row_in,
                                const torch::Tensor& own_tokens_in, int64_t n,
                                double scaling) {
  constexpr const char* fn = "cascade_attention";
  expect_kind(query, fn, "query", torch::kBFloat16, 4);
  expect_kind(own_key, fn, "own_key", torch::kBFloat16, 4);
  expect_kind(own_value, fn, "own_value", torch::kBFloat16, 4);
  expect_kind(packed_key, fn, "packed_key", torch::kBFloat16, 6);
  expect_kind(prompt_value, fn, "prompt_value", torch::kBFloat16, 4);
  const int64_t rows = query.size(0), heads = query.size(1), dim = query.size(3);
  const int64_t kv_heads = own_key.size(1), tokens = own_key.size(2);
  const int64_t prompts = prompt_value.size(0), prompt_len = prompt_value.size(2), blocks = packed_key.size(2);
  TORCH_CHECK(query.size(2) == 1 && own_key.size(3) == dim &&
              own_value.sizes() == own_key.sizes() && kv_heads >= 1 && heads % kv_heads == 0 && dim % 2 == 0 &&
              prompt_value.size(1) == kv_heads && prompt_value.size(3) == dim,
              "cascade_attention: query (rows, heads, 1, dim), own key/value (rows, kv_heads, tokens, dim) and prompt "
              "values (prompts, kv_heads, prompt_len, dim) with heads a multiple of kv_heads and dim even, got ",
              query.sizes(), ", ", own_key.sizes(), ", ", own_value.sizes(), ", ", prompt_value.sizes());
  expect(packed_key, fn, "packed_key", torch::kBFloat16, {prompts, kv_heads, blocks, dim / 2, kKeyBlock, 2});
  expect(prompt_bias, fn, "prompt_bias", torch::kFloat32, {prompts, blocks * kKeyBlock});
  TORCH_CHECK(prompt_len <= blocks * kKeyBlock, "cascade_attention: more prompt values than packed keys");
  for (const auto* t : {&query, &own_key, &own_value, &prompt_value})
    TORCH_CHECK(t->stride(3) == 1 && (t == &query || t->stride(2) == dim),
                "cascade_attention: query/key/value need contiguous rows of dim values and key/value contiguous "
                "token rows");
  TORCH_CHECK(n >= 1, "cascade_attention: n must be at least 1");
  TORCH_CHECK(slot_in.device().is_cpu() && slot_in.dim() == 1 && slot_in.size(0) == rows,
              "cascade_attention: slot must be a CPU vector of one entry per row");
  TORCH_CHECK(own_tokens_in.device().is_cpu() && own_tokens_in.dim() == 1 && own_tokens_in.size(0) == rows &&
              own_row_in.device().is_cpu() && own_row_in.dim() == 1 && own_row_in.size(0) == rows,
              "cascade_attention: own_row and own_tokens must be CPU vectors of one entry per row");
  const auto own_row = own_row_in.to(torch::kLong).contiguous();
  const int64_t* buffer_row = own_row.data_ptr<int64_t>();
  const auto slot = slot_in.to(torch::kLong).contiguous();
  const auto own_tokens = own_tokens_in.to(torch::kLong).contiguous();
  const int64_t* sl = slot.data_ptr<int64_t>();
  const int64_t* owned = own_tokens.data_ptr<int64_t>();
  // each prompt's active rows: order[first[p] .. first[p + 1]) (a counting sort of the rows by prompt)
  std::vector<int64_t> first(prompts + 1, 0), order(rows), seen(prompts * n, 0);
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(sl[r] >= 0 && sl[r] < prompts * n && !seen[sl[r]]++,
                "cascade_attention: slot must hold distinct places within the prompts x n grid");
    TORCH_CHECK(buffer_row[r] >= 0 && buffer_row[r] < own_key.size(0),
                "cascade_attention: own_row must index the own key/value buffers (", own_key.size(0), " rows)");
    TORCH_CHECK(owned[r] >= 1 && owned[r] <= tokens,
                "cascade_attention: own_tokens must be between 1 and the own key/value tokens (", tokens, ")");
    ++first[sl[r] / n + 1];
  }
  for (int64_t p = 0; p < prompts; ++p) first[p + 1] += first[p];
  {
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t r = 0; r < rows; ++r) order[next[sl[r] / n]++] = r;
  }
  auto out = torch::empty({rows, 1, heads, dim}, query.options());
  const bf16* q = reinterpret_cast<const bf16*>(query.data_ptr<at::BFloat16>());
  const bf16* ok = reinterpret_cast<const bf16*>(own_key.data_ptr<at::BFloat16>());
  const bf16* ov = reinterpret_cast<const bf16*>(own_value.data_ptr<at::BFloat16>());
  const bf16* pk = reinterpret_cast<const bf16*>(packed_key.data_ptr<at::BFloat16>());
  const bf16* pv = reinterpret_cast<const bf16*>(prompt_value.data_ptr<at::BFloat16>());
  const float* bias = prompt_bias.data_ptr<float>();
  bf16* o = reinterpret_cast<bf16*>(out.data_ptr<at::BFloat16>());
  const int64_t group = heads / kv_heads, width = blocks * kKeyBlock;
  const float scale = float(scaling);
  // each prompt's key blocks up to its last attended position (the rest is padding, never attended to)
  std::vector<int64_t> live(prompts, 0);
  for (int64_t p = 0; p < prompts; ++p) {
    if (first[p] == first[p + 1]) continue;
    const float* row = bias + p * width;
    int64_t last = width;
    while (last > 0 && std::isinf(row[last - 1]) && row[last - 1] < 0) --last;
    live[p] = (last + kKeyBlock - 1) / kKeyBlock;
  }
  at::parallel_for(0, prompts * kv_heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scores(width + tokens), acc(dim);
    for (int64_t job = b; job < e; ++job) {
      const int64_t p = job / kv_heads, g = job % kv_heads;
      const int64_t blocks_p = live[p], width_p = blocks_p * kKeyBlock;
      const bf16* keys = pk + (p * kv_heads + g) * width * dim;
      const bf16* values = pv + p * prompt_value.stride(0) + g * prompt_value.stride(1);
      for (int64_t i = first[p]; i < first[p + 1]; ++i) {
        const int64_t r = order[i], count = owned[r];
        const bf16* own_k = ok + buffer_row[r] * own_key.stride(0) + g * own_key.stride(1);
        const bf16* own_v = ov + buffer_row[r] * own_value.stride(0) + g * own_value.stride(1);
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const bf16* qr = q + r * query.stride(0) + h * query.stride(1);
          float* own = scores.data() + width_p;
          packed_scores(keys, qr, bias + p * width, blocks_p, dim, scale, scores.data());
          dot_rows(own_k, qr, own, count, dim, false);
          for (int64_t t = 0; t < count; ++t) own[t] *= scale;
          const float total = exp_shifted(scores.data(), width_p + count, max_of(scores.data(), width_p + count));
          std::fill(acc.begin(), acc.end(), 0.f);
          // padding's weights are 0
          weighted_rows(scores.data(), values, std::min(prompt_len, width_p), dim, acc.data());
          weighted_rows(own, own_v, count, dim, acc.data());
          scaled_to_bf16(acc.data(), 1.f / total, dim, o + (r * heads + h) * dim);
        }
      }
    }
  });
  return out;
}

bool uses_avx512_bf16() {
#if RAFTLAB_AVX512_BF16
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("step", &step, "one decoding step of one sequence (see one_row_step.cpp)");
  m.def("rms_norm_rows", &rms_norm_rows, "RMSNorm of bf16 rows with a float32 weight, rounded once");
  m.def("rotary_heads", &rotary_heads, "rotary embedding of the first heads of fused q/k/v rows, rounded once");
  m.def("cascade_attention", &cascade_attention, "one decoding step of cascade attention over prompt and own tokens");
  m.def("matvec", &matvec, "w x in float32 for a bf16 matrix and vector");
  m.def("uses_avx512_bf16", &uses_avx512_bf16, "whether this build uses AVX-512 BF16 dot products");
}
