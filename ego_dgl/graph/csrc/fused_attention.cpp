// Fused CPU attention of EgoGCN's multimodal layers (ego_dgl/graph/fused.py).
//
// One sweep per destination node v, over its in-edges and every channel (modality) c:
//   logit[e, c] = <table[src_e, sel(e, c)], dst[v, c]>
//   w[e, c]     = softmax over v's in-edges of logit[., c]
//   out[v, c]   = sum over v's in-edges of w[e, c] * table[src_e, sel(e, c)]
// sel(e, c) is c, or the per-(edge, channel) row given by `sel` (EGO-hard sends the fused
// mean, an extra channel of the table, on the pairs that pass eps). The backward is one
// sweep per destination too, each thread accumulating the table's gradient in a table of
// its own. Per-edge values stay in the caller's edge order: positions of the CSR order map
// to edge ids through `eid`, so no permutation of per-edge tensors is ever built.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kGrain = 32;  // destinations per parallel task
constexpr int64_t kTile = 16;   // in-edges whose rows are summed while in cache
constexpr int64_t kAhead = 4;   // edges between a row's prefetch and its use

// The widest vectors of T the build targets (GCC vector extensions; 512 bits with
// AVX-512, else 256): the row loops below run on them, with the dot products reduced
// once per row instead of through a scalar chain.
#ifdef __AVX512F__
constexpr int64_t kVectorBytes = 64;
#else
constexpr int64_t kVectorBytes = 32;
#endif

template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(kVectorBytes)));
  static constexpr int64_t N = kVectorBytes / sizeof(T);
  static inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
};

// Pairwise sum of n values: log2(n) dependent adds instead of n.
template <typename T, int64_t N>
__attribute__((always_inline)) inline T hsum(const T* v) {
  if constexpr (N == 1)
    return v[0];
  else
    return hsum<T, N / 2>(v) + hsum<T, N / 2>(v + N / 2);
}

// The sum of a vector's lanes: AVX-512's in-register reduction where the build has it,
// else a pairwise sum (log2(n) dependent adds instead of n).
template <typename T>
__attribute__((always_inline)) inline T reduce(typename Simd<T>::V v) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>)
    return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
  else
    return _mm512_reduce_add_pd(reinterpret_cast<__m512d>(v));
#else
  return hsum<T, Simd<T>::N>(&v[0]);
#endif
}

template <typename T>
__attribute__((always_inline)) inline T dot(const T* a, const T* b, int64_t n) {
  using S = Simd<T>;
  typename S::V lo = {}, hi = {};
  int64_t i = 0;
  for (; i + 2 * S::N <= n; i += 2 * S::N) {
    lo += S::load(a + i) * S::load(b + i);
    hi += S::load(a + i + S::N) * S::load(b + i + S::N);
  }
  lo += hi;
  T s = reduce<T>(lo);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
__attribute__((always_inline)) inline void axpy(T alpha, const T* x, T* y, int64_t n) {
  using S = Simd<T>;
  int64_t i = 0;
  for (; i + S::N <= n; i += S::N) S::store(y + i, S::load(y + i) + alpha * S::load(x + i));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// y += a x + b z, one pass over y.
template <typename T>
__attribute__((always_inline)) inline void axpy2(T a, const T* x, T b, const T* z, T* y, int64_t n) {
  using S = Simd<T>;
  int64_t i = 0;
  for (; i + S::N <= n; i += S::N) S::store(y + i, S::load(y + i) + a * S::load(x + i) + b * S::load(z + i));
  for (; i < n; ++i) y[i] += a * x[i] + b * z[i];
}

// Asks for the `bytes` at p ahead of use: the sweeps read rows of tables far larger than
// the caches in an order the hardware prefetcher cannot guess (Tiktok-sized graphs).
template <typename T>
__attribute__((always_inline)) inline void prefetch_bytes(const T* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(reinterpret_cast<const char*>(p) + o);
}

// Where the rows live: the source table [Ns, Cs, D], destinations [Nd, C, D], and the
// optional per-(edge, channel) selection of the source table's channel (a [E, C] tensor;
// any other shape means channel c reads channel c).
template <typename T, int64_t FixedD>
struct Rows {
  const T* table;
  const T* dst;
  const int64_t* sel;  // [E, C] or nullptr (channel c reads channel c)
  int64_t table_channels, channels, dim;
  int64_t num_edges;

  // The row width, a compile-time constant where FixedD is set: the dot and axpy loops
  // then unroll into a few vector instructions.
  inline int64_t width() const { return FixedD ? FixedD : dim; }
  inline int64_t channel(int64_t e, int64_t c) const { return sel ? sel[e * channels + c] : c; }
  inline const T* src_row(int64_t u, int64_t e, int64_t c) const {
    return table + (u * table_channels + channel(e, c)) * width();
  }
  inline const T* dst_row(int64_t v, int64_t c) const { return dst + (v * channels + c) * width(); }
  // Prefetch the table row of the source at CSR position p + kAhead (positions run on
  // across destinations, up to num_edges).
  inline void prefetch_source(const int64_t* col, int64_t p) const {
    if (p + kAhead < num_edges) prefetch_bytes(table + col[p + kAhead] * table_channels * width(), table_channels * width() * sizeof(T));
  }
};

// exp with glibc's vector variants (libmvec): declared SIMD here, as glibc's math.h
// does only under -ffast-math, so `#pragma omp simd` loops call the vector exp of the
// target ISA instead of one scalar call per value (the softmax's largest cost otherwise).
extern "C" {
float expf(float) __attribute__((simd("notinbranch")));
double exp(double) __attribute__((simd("notinbranch")));
}

inline float exp_of(float x) { return expf(x); }
inline double exp_of(double x) { return exp(x); }

// Softmax in place over each channel's `deg` values of a channel-major [C, deg] buffer.
template <typename T>
void softmax_channels(T* buf, int64_t deg, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    T* x = buf + c * deg;
    T peak = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < deg; ++k) peak = std::max(peak, x[k]);
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t k = 0; k < deg; ++k) {
      x[k] = exp_of(x[k] - peak);
      total += x[k];
    }
    const T scale = T(1) / total;
#pragma omp simd
    for (int64_t k = 0; k < deg; ++k) x[k] *= scale;
  }
}

// Per destination, the logits of all in-edges into `logits` ([C, deg], channel-major)
// and, when `acc` is given, the softmax-weighted sum of the rows, unnormalised: tile by
// tile, each tile's rows read once (their dots, then their sum while still in cache), the
// sum rescaled when a tile raises a channel's running maximum (as fused attention kernels
// do). Returns through `acc` (sum of exp(l - peak) * row) and `total` (sum of exp(l - peak)).
template <typename T, int64_t FixedD>
void attend_destination(const Rows<T, FixedD>& rows, int64_t v, int64_t first, int64_t deg, const int64_t* col,
                        const int64_t* eid, T* logits, T* acc, T* peak, T* total, T* tile) {
  const int64_t C = rows.channels, D = rows.width();
  if (acc) {
    std::fill(acc, acc + C * D, T(0));
    std::fill(peak, peak + C, -std::numeric_limits<T>::infinity());
    std::fill(total, total + C, T(0));
  }
  for (int64_t t0 = 0; t0 < deg; t0 += kTile) {
    const int64_t n = std::min(kTile, deg - t0);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t p = first + t0 + k, e = eid[p];
      rows.prefetch_source(col, p);
      for (int64_t c = 0; c < C; ++c) logits[c * deg + t0 + k] = dot(rows.src_row(col[p], e, c), rows.dst_row(v, c), D);
    }
    if (!acc) continue;
    for (int64_t c = 0; c < C; ++c) {
      const T* l = logits + c * deg + t0;
      T top = peak[c];
      for (int64_t k = 0; k < n; ++k) top = std::max(top, l[k]);
      if (top > peak[c] && total[c] > 0) {
        const T scale = exp_of(peak[c] - top);
        total[c] *= scale;
        for (int64_t i = 0; i < D; ++i) acc[c * D + i] *= scale;
      }
      peak[c] = top;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < n; ++k) {
        tile[c * kTile + k] = exp_of(l[k] - top);
        sum += tile[c * kTile + k];
      }
      total[c] += sum;
    }
    for (int64_t k = 0; k < n; ++k) {
      const int64_t p = first + t0 + k, e = eid[p];
      for (int64_t c = 0; c < C; ++c) axpy(tile[c * kTile + k], rows.src_row(col[p], e, c), acc + c * D, D);
    }
  }
}

template <typename T, int64_t FixedD>
void forward_kernel(const Rows<T, FixedD>& rows, const int64_t* indptr, const int64_t* col, const int64_t* eid,
                    int64_t num_dst, T* weights, T* out) {
  const int64_t C = rows.channels, D = rows.width();
  at::parallel_for(0, num_dst, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<T> logits, peak(C), total(C), tile(C * kTile);
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = indptr[v], deg = indptr[v + 1] - first;
      logits.resize(deg * C);
      T* acc = out ? out + v * C * D : nullptr;
      attend_destination(rows, v, first, deg, col, eid, logits.data(), acc, peak.data(), total.data(), tile.data());
      for (int64_t c = 0; acc && c < C; ++c) {
        const T scale = total[c] > 0 ? T(1) / total[c] : T(0);
        for (int64_t i = 0; i < D; ++i) acc[c * D + i] *= scale;
      }
      softmax_channels(logits.data(), deg, C);
      for (int64_t k = 0; k < deg; ++k)
        for (int64_t c = 0; c < C; ++c) weights[eid[first + k] * C + c] = logits[c * deg + k];
    }
  });
}

// Per destination v, two passes over its in-edges, whose rows stay in cache between them.
// First: dw = <G[v], row> + gw and mean = sum_k w dw. Second: the logit gradient
// dl = w (dw - mean), dst's gradient sum_k dl row, and each source's table gradient
// w G[v] + dl dst[v] into the channel the pair read. A source gathers from many
// destinations, so each thread adds into its own table (`grad_tables[thread]`, summed by
// the caller): no second sweep over the transposed CSR, no per-edge tensor written.
template <typename T, int64_t FixedD>
void backward_kernel(const Rows<T, FixedD>& rows, const int64_t* indptr, const int64_t* col, const int64_t* eid,
                     int64_t num_dst, const T* weights, const T* grad_out, const T* grad_w, T* grad_dst,
                     const std::vector<T*>& grad_tables) {
  const int64_t C = rows.channels, D = rows.width(), Cs = rows.table_channels;
  at::parallel_for(0, num_dst, kGrain, [&](int64_t begin, int64_t end) {
    T* grad_table = grad_tables.empty() ? nullptr : grad_tables[at::get_thread_num()];
    std::vector<T> dws, mean(C);
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = indptr[v], deg = indptr[v + 1] - first;
      T* grad = grad_dst ? grad_dst + v * C * D : nullptr;
      dws.resize(deg * C);
      std::fill(mean.begin(), mean.end(), T(0));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p];
        if (grad_out) rows.prefetch_source(col, p);
        for (int64_t c = 0; c < C; ++c) {
          T dw = grad_w ? grad_w[e * C + c] : T(0);
          if (grad_out) dw += dot(grad_out + (v * C + c) * D, rows.src_row(col[p], e, c), D);
          dws[k * C + c] = dw;
          mean[c] += weights[e * C + c] * dw;
        }
      }
      if (grad) std::fill(grad, grad + C * D, T(0));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p], u = col[p];
        for (int64_t c = 0; c < C; ++c) {
          const T w = weights[e * C + c], dl = w * (dws[k * C + c] - mean[c]);
          if (grad) axpy(dl, rows.src_row(u, e, c), grad + c * D, D);
          if (!grad_table) continue;
          T* target = grad_table + (u * Cs + rows.channel(e, c)) * D;
          if (grad_out)
            axpy2(w, grad_out + (v * C + c) * D, dl, rows.dst_row(v, c), target, D);
          else
            axpy(dl, rows.dst_row(v, c), target, D);
        }
      }
    }
  });
}

template <typename T, int64_t FixedD>
Rows<T, FixedD> rows_of(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel, int64_t num_edges) {
  return Rows<T, FixedD>{table.data_ptr<T>(), dst.data_ptr<T>(), sel.dim() == 2 ? sel.data_ptr<int64_t>() : nullptr,
                 table.size(1), dst.size(1), dst.size(2), num_edges};
}

void check_inputs(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel) {
  TORCH_CHECK(table.device().is_cpu() && dst.device().is_cpu(), "fused attention runs on the CPU only");
  TORCH_CHECK(table.dim() == 3 && dst.dim() == 3 && table.size(2) == dst.size(2), "table [Ns, Cs, D] and dst [Nd, C, D] expected");
  TORCH_CHECK(table.is_contiguous() && dst.is_contiguous() && sel.is_contiguous(), "contiguous inputs expected");
  TORCH_CHECK(table.scalar_type() == dst.scalar_type(), "table and dst must share a dtype");
  TORCH_CHECK(sel.dim() == 2 || table.size(1) == dst.size(1), "without sel, table and dst need the same channels");
}

// Calls f(std::integral_constant<int64_t, W>) with W = dim for the usual widths (a
// compile-time row width), else W = 0 (read at run time).
template <typename F>
void with_width(int64_t dim, F&& f) {
  switch (dim) {
    case 32: return f(std::integral_constant<int64_t, 32>{});
    case 64: return f(std::integral_constant<int64_t, 64>{});
    case 128: return f(std::integral_constant<int64_t, 128>{});
    default: return f(std::integral_constant<int64_t, 0>{});
  }
}

}  // namespace

// (out [Nd, C, D] or an empty tensor when !aggregate, weights [E, C] in edge order)
std::vector<at::Tensor> attend_forward(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel,
                                       const at::Tensor& indptr, const at::Tensor& col, const at::Tensor& eid, bool aggregate) {
  check_inputs(table, dst, sel);
  const int64_t num_dst = indptr.size(0) - 1;
  auto weights = at::empty({col.size(0), dst.size(1)}, dst.options());
  auto out = aggregate ? at::empty({num_dst, dst.size(1), dst.size(2)}, dst.options()) : at::empty({0}, dst.options());
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "attend_forward", [&] { with_width(dst.size(2), [&](auto width) {
    forward_kernel(rows_of<scalar_t, width()>(table, dst, sel, col.size(0)), indptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                             eid.data_ptr<int64_t>(), num_dst, weights.data_ptr<scalar_t>(),
                   aggregate ? out.data_ptr<scalar_t>() : nullptr);
  }); });
  return {out, weights};
}

// (grad_table or empty, grad_dst or empty); grad_out / grad_w empty when no gradient arrived.
std::vector<at::Tensor> attend_backward(const at::Tensor& grad_out, const at::Tensor& grad_w, const at::Tensor& table,
                                        const at::Tensor& dst, const at::Tensor& sel, const at::Tensor& weights,
                                        const at::Tensor& indptr, const at::Tensor& col, const at::Tensor& eid,
                                        bool need_table, bool need_dst) {
  check_inputs(table, dst, sel);
  TORCH_CHECK(grad_out.is_contiguous() && grad_w.is_contiguous(), "contiguous gradients expected");
  const int64_t num_dst = indptr.size(0) - 1;
  // One table gradient per thread after the first (which writes the result itself).
  const int64_t threads = need_table ? at::get_num_threads() : 0;
  auto grad_table = need_table ? at::zeros_like(table) : at::empty({0}, table.options());
  auto extra = threads > 1 ? at::zeros({threads - 1, table.numel()}, table.options()) : at::empty({0}, table.options());
  auto grad_dst = need_dst ? at::empty_like(dst) : at::empty({0}, dst.options());
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "attend_backward", [&] { with_width(dst.size(2), [&](auto width) {
    std::vector<scalar_t*> tables;
    if (need_table) tables.push_back(grad_table.data_ptr<scalar_t>());
    for (int64_t t = 1; t < threads; ++t) tables.push_back(extra[t - 1].data_ptr<scalar_t>());
    backward_kernel(rows_of<scalar_t, width()>(table, dst, sel, col.size(0)), indptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                    eid.data_ptr<int64_t>(), num_dst, weights.data_ptr<scalar_t>(),
                    grad_out.numel() ? grad_out.data_ptr<scalar_t>() : nullptr, grad_w.numel() ? grad_w.data_ptr<scalar_t>() : nullptr,
                    need_dst ? grad_dst.data_ptr<scalar_t>() : nullptr, tables);
  }); });
  if (threads > 1) grad_table.view({-1}).add_(extra.sum(0));
  return {grad_table, grad_dst};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attend_forward", &attend_forward, "fused dot + softmax + weighted sum per destination");
  m.def("attend_backward", &attend_backward, "its backward: two passes per destination, per-thread table gradients");
}
