// Fused CPU attention of EgoGCN's multimodal layers (ego_dgl/model/fused.py).
//
// One sweep per destination node v, over its in-edges and every channel (modality) c:
//   logit[e, c] = <table[src_e, sel(e, c)], dst[v, c]>
//   w[e, c]     = softmax over v's in-edges of logit[., c]
//   out[v, c]   = sum over v's in-edges of w[e, c] * table[src_e, sel(e, c)]
// sel(e, c) is c, or the per-(edge, channel) row given by `sel` (EGO-hard sends the fused
// mean, an extra channel of the table, on the pairs that pass eps). The backward runs one
// sweep per destination (gradients of the logits and of dst) and one per source over the
// transposed CSR (gradients of the table), so no two threads write the same row.
// Per-edge values stay in the caller's edge order: positions of the CSR orders map to
// edge ids through `eid` / `t_eid`, so no permutation of per-edge tensors is ever built.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kGrain = 32;  // destinations per parallel task

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
inline void axpy(T alpha, const T* x, T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Where the rows live: the source table [Ns, Cs, D], destinations [Nd, C, D], and the
// optional per-(edge, channel) selection of the source table's channel (a [E, C] tensor;
// any other shape means channel c reads channel c).
template <typename T>
struct Rows {
  const T* table;
  const T* dst;
  const int64_t* sel;  // [E, C] or nullptr (channel c reads channel c)
  int64_t table_channels, channels, dim;

  inline int64_t channel(int64_t e, int64_t c) const { return sel ? sel[e * channels + c] : c; }
  inline const T* src_row(int64_t u, int64_t e, int64_t c) const {
    return table + (u * table_channels + channel(e, c)) * dim;
  }
  inline const T* dst_row(int64_t v, int64_t c) const { return dst + (v * channels + c) * dim; }
};

// Softmax in place over the `deg` rows of a [deg, C] buffer, column by column.
template <typename T>
void softmax_columns(T* buf, int64_t deg, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    T peak = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < deg; ++k) peak = std::max(peak, buf[k * channels + c]);
    T total = 0;
    for (int64_t k = 0; k < deg; ++k) total += (buf[k * channels + c] = std::exp(buf[k * channels + c] - peak));
    for (int64_t k = 0; k < deg; ++k) buf[k * channels + c] /= total;
  }
}

template <typename T>
void forward_kernel(const Rows<T>& rows, const int64_t* indptr, const int64_t* col, const int64_t* eid,
                    int64_t num_dst, T* weights, T* out) {
  const int64_t C = rows.channels, D = rows.dim;
  at::parallel_for(0, num_dst, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<T> buf;
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = indptr[v], deg = indptr[v + 1] - first;
      buf.resize(deg * C);
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p];
        for (int64_t c = 0; c < C; ++c) buf[k * C + c] = dot(rows.src_row(col[p], e, c), rows.dst_row(v, c), D);
      }
      softmax_columns(buf.data(), deg, C);
      if (out) std::fill(out + v * C * D, out + (v + 1) * C * D, T(0));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p];
        for (int64_t c = 0; c < C; ++c) {
          weights[e * C + c] = buf[k * C + c];
          if (out) axpy(buf[k * C + c], rows.src_row(col[p], e, c), out + (v * C + c) * D, D);
        }
      }
    }
  });
}

// Per destination: the logits' gradient dl = w (dw - sum_k w dw), dw = <G, row> + gw,
// written per edge into `dlogit`, and dst's gradient sum_k dl * row.
template <typename T>
void backward_dst_kernel(const Rows<T>& rows, const int64_t* indptr, const int64_t* col, const int64_t* eid,
                         int64_t num_dst, const T* weights, const T* grad_out, const T* grad_w, T* dlogit, T* grad_dst) {
  const int64_t C = rows.channels, D = rows.dim;
  at::parallel_for(0, num_dst, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<T> buf, mean(C);
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = indptr[v], deg = indptr[v + 1] - first;
      buf.resize(deg * C);
      std::fill(mean.begin(), mean.end(), T(0));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p];
        for (int64_t c = 0; c < C; ++c) {
          T dw = grad_w ? grad_w[e * C + c] : T(0);
          if (grad_out) dw += dot(grad_out + (v * C + c) * D, rows.src_row(col[p], e, c), D);
          buf[k * C + c] = dw;
          mean[c] += weights[e * C + c] * dw;
        }
      }
      if (grad_dst) std::fill(grad_dst + v * C * D, grad_dst + (v + 1) * C * D, T(0));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t p = first + k, e = eid[p];
        for (int64_t c = 0; c < C; ++c) {
          const T dl = weights[e * C + c] * (buf[k * C + c] - mean[c]);
          dlogit[e * C + c] = dl;
          if (grad_dst) axpy(dl, rows.src_row(col[p], e, c), grad_dst + (v * C + c) * D, D);
        }
      }
    }
  });
}

// Per source u, over its out-edges (transposed CSR): the table's gradient
// sum_e w G[v] + dl dst[v], into the channel each (edge, channel) pair read.
template <typename T>
void backward_src_kernel(const Rows<T>& rows, const int64_t* t_indptr, const int64_t* t_row, const int64_t* t_eid,
                         int64_t num_src, const T* weights, const T* grad_out, const T* dlogit, T* grad_table) {
  const int64_t C = rows.channels, D = rows.dim, Cs = rows.table_channels;
  at::parallel_for(0, num_src, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      std::fill(grad_table + u * Cs * D, grad_table + (u + 1) * Cs * D, T(0));
      for (int64_t q = t_indptr[u]; q < t_indptr[u + 1]; ++q) {
        const int64_t e = t_eid[q], v = t_row[q];
        for (int64_t c = 0; c < C; ++c) {
          T* target = grad_table + (u * Cs + rows.channel(e, c)) * D;
          if (grad_out) axpy(weights[e * C + c], grad_out + (v * C + c) * D, target, D);
          axpy(dlogit[e * C + c], rows.dst_row(v, c), target, D);
        }
      }
    }
  });
}

template <typename T>
Rows<T> rows_of(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel) {
  return Rows<T>{table.data_ptr<T>(), dst.data_ptr<T>(), sel.dim() == 2 ? sel.data_ptr<int64_t>() : nullptr,
                 table.size(1), dst.size(1), dst.size(2)};
}

void check_inputs(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel) {
  TORCH_CHECK(table.device().is_cpu() && dst.device().is_cpu(), "fused attention runs on the CPU only");
  TORCH_CHECK(table.dim() == 3 && dst.dim() == 3 && table.size(2) == dst.size(2), "table [Ns, Cs, D] and dst [Nd, C, D] expected");
  TORCH_CHECK(table.is_contiguous() && dst.is_contiguous() && sel.is_contiguous(), "contiguous inputs expected");
  TORCH_CHECK(table.scalar_type() == dst.scalar_type(), "table and dst must share a dtype");
  TORCH_CHECK(sel.dim() == 2 || table.size(1) == dst.size(1), "without sel, table and dst need the same channels");
}

}  // namespace

// (out [Nd, C, D] or an empty tensor when !aggregate, weights [E, C] in edge order)
std::vector<at::Tensor> attend_forward(const at::Tensor& table, const at::Tensor& dst, const at::Tensor& sel,
                                       const at::Tensor& indptr, const at::Tensor& col, const at::Tensor& eid, bool aggregate) {
  check_inputs(table, dst, sel);
  const int64_t num_dst = indptr.size(0) - 1;
  auto weights = at::empty({col.size(0), dst.size(1)}, dst.options());
  auto out = aggregate ? at::empty({num_dst, dst.size(1), dst.size(2)}, dst.options()) : at::empty({0}, dst.options());
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "attend_forward", [&] {
    forward_kernel<scalar_t>(rows_of<scalar_t>(table, dst, sel), indptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                             eid.data_ptr<int64_t>(), num_dst, weights.data_ptr<scalar_t>(),
                             aggregate ? out.data_ptr<scalar_t>() : nullptr);
  });
  return {out, weights};
}

// (grad_table or empty, grad_dst or empty); grad_out / grad_w empty when no gradient arrived.
std::vector<at::Tensor> attend_backward(const at::Tensor& grad_out, const at::Tensor& grad_w, const at::Tensor& table,
                                        const at::Tensor& dst, const at::Tensor& sel, const at::Tensor& weights,
                                        const at::Tensor& indptr, const at::Tensor& col, const at::Tensor& eid,
                                        const at::Tensor& t_indptr, const at::Tensor& t_row, const at::Tensor& t_eid,
                                        bool need_table, bool need_dst) {
  check_inputs(table, dst, sel);
  TORCH_CHECK(grad_out.is_contiguous() && grad_w.is_contiguous(), "contiguous gradients expected");
  const int64_t num_dst = indptr.size(0) - 1, num_src = t_indptr.size(0) - 1;
  auto dlogit = at::empty_like(weights);
  auto grad_table = need_table ? at::empty_like(table) : at::empty({0}, table.options());
  auto grad_dst = need_dst ? at::empty_like(dst) : at::empty({0}, dst.options());
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "attend_backward", [&] {
    const auto rows = rows_of<scalar_t>(table, dst, sel);
    const scalar_t* g_out = grad_out.numel() ? grad_out.data_ptr<scalar_t>() : nullptr;
    const scalar_t* g_w = grad_w.numel() ? grad_w.data_ptr<scalar_t>() : nullptr;
    backward_dst_kernel<scalar_t>(rows, indptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), eid.data_ptr<int64_t>(), num_dst,
                                  weights.data_ptr<scalar_t>(), g_out, g_w, dlogit.data_ptr<scalar_t>(),
                                  need_dst ? grad_dst.data_ptr<scalar_t>() : nullptr);
    if (need_table)
      backward_src_kernel<scalar_t>(rows, t_indptr.data_ptr<int64_t>(), t_row.data_ptr<int64_t>(), t_eid.data_ptr<int64_t>(),
                                    num_src, weights.data_ptr<scalar_t>(), g_out, dlogit.data_ptr<scalar_t>(),
                                    grad_table.data_ptr<scalar_t>());
  });
  return {grad_table, grad_dst};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attend_forward", &attend_forward, "fused dot + softmax + weighted sum per destination");
  m.def("attend_backward", &attend_backward, "its backward: one sweep per destination, one per source");
}
