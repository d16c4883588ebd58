// CPU convolution: im2col / col2im into the caller's workspace, then our blocked
// SGEMM (gemm_cpu.h). Per group g the GEMMs are
//   forward:          Y_g  (Kg x cols)   = W_g   (Kg x CgRS)  * col  (CgRS x cols)
//   backward_data:    dcol (CgRS x cols) = W_g^T (CgRS x Kg)  * dY_g (Kg x cols), then col2im
//   backward_filter:  dW_g (Kg x CgRS)  += dY_g  (Kg x cols)  * col^T (cols x CgRS)
// Two ways to spread them over threads:
//  - per image: forward and data gradient with enough (image, group) pairs give each pair to one thread,
//    with its own im2col buffer, and write straight into y / dx. No barrier between im2col, GEMM and
//    col2im: on a busy machine each barrier can wait a whole time slice for a descheduled thread. Small
//    maps (7x7) go a few images to a pair, side by side in one product (images_per_item).
//  - batched: otherwise (few images, e.g. one) a chunk of nb images becomes one wide GEMM (cols =
//    nb*P*Q) run in parallel; Y_g / dY_g are staged in the workspace because their columns are not
//    evenly strided in NCHW. Chunks keep the workspace bounded.
// The filter gradient sums over images: where dW is large, threads take tiles of it and each sums every image
// into its tile (filter_by_tap_tiles); otherwise images are dealt to a fixed number of partial sums ("slots",
// see filter_slots) that run in parallel, then the slots are added in order.
//
// Determinism: every GEMM element is summed by one thread in a fixed order (the same order on both
// forward paths), chunking and slotting depend only on the shape, and col2im gives each (image,
// channel) plane to one thread; so results are independent of the thread count and bit-identical from
// run to run.
#include <algorithm>
#include <cstring>

#include "conv.h"
#include "gemm_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pya::cpu {
namespace {

// Workspace for one chunk: im2col columns (CgRS x nb*PQ) plus staged Y/dY (Kg x nb*PQ).
constexpr int64_t kWorkspaceBudgetFloats = int64_t(1) << 22;  // 16 MiB
// Below this many elements a loop runs on one thread: waking the team costs more than it saves (and on
// a busy machine a parallel region's barrier can wait for a descheduled thread).
constexpr int64_t kParallelMin = int64_t(1) << 15;

bool worth_forking(int64_t work) { return work > kParallelMin && cpu_threads_available() > 1; }

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int64_t chunk_images(const ConvShape& s) {
  const int64_t per_image = (s.CRSg() + s.Kg()) * s.PQ();
  return std::max<int64_t>(1, std::min<int64_t>(s.N, kWorkspaceBudgetFloats / std::max<int64_t>(per_image, 1)));
}

// Output positions o in [0, out) whose input coordinate o*stride - pad + tap lies in [0, in). Called for every
// tap row of every image: stride 1 (most layers) needs no division.
void valid_range(int64_t out, int64_t in, int64_t tap, int64_t stride, int64_t pad, int64_t& lo, int64_t& hi) {
  const int64_t first = pad - tap;  // smallest o*stride that is in range
  const int64_t last = in - 1 + pad - tap;  // largest o*stride in range
  if (stride == 1) {
    lo = first <= 0 ? 0 : first;
    hi = last < 0 ? 0 : std::min(out, last + 1);
  } else {
    lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  }
  if (hi < lo) hi = lo;
}

// Calls f(row, c, r, t) for the im2col rows row = (c*R + r)*S + t in [begin, end) in order, with no division
// per row (im2col of one image's 7x7 maps spent more on a row's divisions than on copying its 49 floats).
template <class F>
void walk_tap_rows(const ConvShape& s, int64_t begin, int64_t end, const F& f) {
  int64_t c = begin / s.RS(), r = begin % s.RS() / s.S, t = begin % s.S;
  for (int64_t row = begin; row < end; ++row) {
    f(row, c, r, t);
    if (++t == s.S) {
      t = 0;
      if (++r == s.R) r = 0, ++c;
    }
  }
}

// walk_tap_rows over [0, rows), shared among the threads in contiguous ranges when `parallel`.
template <class F>
void for_tap_rows(const ConvShape& s, int64_t rows, bool parallel, const F& f) {
#pragma omp parallel if (parallel)
  {
#ifdef _OPENMP
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
#else
    const int64_t threads = 1, id = 0;
#endif
    walk_tap_rows(s, rows * id / threads, rows * (id + 1) / threads, f);
  }
}

// Whether rows of the output and of the input line up (stride 1, Q == W: padding (S - 1) / 2, as in every
// AlexNet layer but conv1): then tap (r, t)'s column row of an image is the plane shifted by one offset,
// (r - pad) * W + (t - pad), so im2col and col2im move it as one flat run of P*Q floats, and fix up the
// few elements whose column falls in the padding. Row by row, the 7x7 maps of the small preset's conv3-5
// spent half of a forward in im2col's per-row bookkeeping.
bool rows_line_up(const ConvShape& s) { return s.stride == 1 && s.Q == s.W; }

// Where tap (r, t) meets the input, for any image: output rows p_lo .. p_hi - 1 and columns q_lo .. q_hi - 1
// (no rows when none of its elements does). Where rows line up, the tap's row of P*Q elements is
// plane[j + shift] from `first` (the first element inside the input) to `last` (one past the last).
struct TapRange {
  int64_t p_lo, p_hi, q_lo, q_hi, shift, first, last;
};

TapRange tap_range(const ConvShape& s, int64_t r, int64_t t) {
  TapRange a;
  valid_range(s.P, s.H, r, s.stride, s.pad, a.p_lo, a.p_hi);
  valid_range(s.Q, s.W, t, s.stride, s.pad, a.q_lo, a.q_hi);
  if (a.q_lo >= a.q_hi) a.p_hi = a.p_lo;
  a.shift = (r - s.pad) * s.W + (t - s.pad);
  const bool any = a.p_lo < a.p_hi;
  a.first = any ? a.p_lo * s.Q + a.q_lo : s.PQ();
  a.last = any ? (a.p_hi - 1) * s.Q + a.q_hi : s.PQ();
  return a;
}

// Columns k0 .. k1 - 1 of an im2col row (a block of output positions p*Q + q), and the output rows they
// touch: worked out once per block, not per row.
struct ColumnRange {
  int64_t k0, k1, p_first, p_last;
};

ColumnRange whole_row(const ConvShape& s) { return {0, s.PQ(), 0, s.P - 1}; }
ColumnRange column_range(const ConvShape& s, int64_t k0, int64_t count) {
  return {k0, k0 + count, k0 / s.Q, (k0 + count - 1) / s.Q};
}

// A flat run between `first` and `last` also covers, in rows p_lo .. p_hi - 1, the columns that lie in the
// padding (the neighbouring rows' elements): zeroes those of columns k0 .. k1 - 1 in a tap's row (element j
// at row[j - k0]).
void zero_padding_columns(float* row, const ConvShape& s, const TapRange& a, const ColumnRange& cols) {
  if (a.q_lo == 0 && a.q_hi == s.Q) return;
  const int64_t Q = s.Q, p_end = std::min(a.p_hi, cols.p_last + 1);
  for (int64_t p = std::max(a.p_lo, cols.p_first); p < p_end; ++p) {
    for (int64_t j = std::max(cols.k0, p * Q); j < std::min(cols.k1, p * Q + a.q_lo); ++j) row[j - cols.k0] = 0.f;
    for (int64_t j = std::max(cols.k0, p * Q + a.q_hi); j < std::min(cols.k1, p * Q + Q); ++j) row[j - cols.k0] = 0.f;
  }
}

// Where rows line up: which elements of a tap column's row of P*Q lie inside the input, as all-ones (inside)
// or zero (padding) bit masks, one row per tap column t (shared by every channel, tap row and image). A flat
// run ANDed with it is a tap's im2col row, padding zeroed, in one loop GCC vectorises, and col2im adds a
// masked run the same way; the few padding elements zeroed per output row instead (zero_padding_columns)
// cost 10-13% of the instructions of every pass of the small preset's conv2 and conv3 (callgrind). Built
// per call on the stack, for shapes whose masks fit (else null: zero_padding_columns does it). The same
// values either way (x AND all-ones is x; AND zero is +0.f, which zeroing stored and col2im added).
typedef uint32_t __attribute__((__may_alias__)) float_bits;  // a float's bits, read without aliasing UB

class PaddingMasks {
 public:
  // Columns `cols` of every tap column's row: row(t)[j - cols.k0] for column j.
  PaddingMasks(const ConvShape& s, const ColumnRange& cols) : width_(cols.k1 - cols.k0) {
    if (!rows_line_up(s) || s.S * width_ > kMaxElements || s.pad == 0) return;
    for (int64_t t = 0; t < s.S; ++t) {
      int64_t q_lo, q_hi;
      valid_range(s.Q, s.W, t, s.stride, s.pad, q_lo, q_hi);
      uint32_t* row = bits_ + t * width_;
      for (int64_t j = 0, q = cols.k0 % s.Q; j < width_; ++j, q = q + 1 == s.Q ? 0 : q + 1)
        row[j] = q >= q_lo && q < q_hi ? ~0u : 0u;
    }
    active_ = true;
  }
  const uint32_t* row(int64_t t) const { return active_ ? bits_ + t * width_ : nullptr; }

 private:
  static constexpr int64_t kMaxElements = 4096;  // 16 KiB of stack: S x (a block's or a 7x7 map's columns)
  int64_t width_;
  bool active_ = false;
  uint32_t bits_[kMaxElements];
};

// Columns `cols` of image n's im2col row for tap (c, r, t), `plane` its channel c:
//   dst[j - k0] = x[n, g*Cg + c, p*st - pad + r, q*st - pad + t] at j = p*Q + q (0 in the padding).
// `mask`: PaddingMasks(s, cols).row(t), or null.
void im2col_row(const float* plane, const ConvShape& s, int64_t r, int64_t t, const TapRange& a,
                const ColumnRange& cols, float* dst, const uint32_t* mask) {
  const int64_t k0 = cols.k0, k1 = cols.k1, Q = s.Q;
  if (rows_line_up(s)) {
    // The run from the first element inside the input to the last (every read inside the plane), zeros
    // around it and in the padding columns it crossed.
    const int64_t z1 = std::clamp(a.first, k0, k1), z2 = std::clamp(a.last, z1, k1);
    for (int64_t j = k0; j < z1; ++j) dst[j - k0] = 0.f;
    if (mask) {
      const float_bits* src = reinterpret_cast<const float_bits*>(plane + a.shift);
      float_bits* out = reinterpret_cast<float_bits*>(dst);
      for (int64_t j = z1; j < z2; ++j) out[j - k0] = src[j] & mask[j - k0];
    } else {
      for (int64_t j = z1; j < z2; ++j) dst[j - k0] = plane[j + a.shift];
    }
    for (int64_t j = z2; j < k1; ++j) dst[j - k0] = 0.f;
    if (!mask) zero_padding_columns(dst, s, a, cols);
    return;
  }
  // Index arithmetic, not a pointer to before the row: w0 is negative in the padding.
  const int64_t w0 = conv_in_coord(0, t, s.stride, s.pad);
  for (int64_t p = cols.p_first; p <= cols.p_last; ++p) {
    const int64_t qb = std::max<int64_t>(0, k0 - p * Q), qe = std::min(Q, k1 - p * Q);
    float* d = dst + (p * Q - k0);  // d[q] is column p*Q + q, for q in [qb, qe)
    if (p < a.p_lo || p >= a.p_hi) {
      for (int64_t q = qb; q < qe; ++q) d[q] = 0.f;
      continue;
    }
    const float* src = plane + conv_in_coord(p, r, s.stride, s.pad) * s.W;
    const int64_t lo = std::clamp(a.q_lo, qb, qe), hi = std::clamp(a.q_hi, lo, qe);
    for (int64_t q = qb; q < lo; ++q) d[q] = 0.f;
    if (s.stride == 1) {
      for (int64_t q = lo; q < hi; ++q) d[q] = src[w0 + q];
    } else {
      for (int64_t q = lo; q < hi; ++q) d[q] = src[w0 + q * s.stride];
    }
    for (int64_t q = hi; q < qe; ++q) d[q] = 0.f;
  }
}

// Row `row` = tap (c, r, t) of images n0 .. n0 + nb - 1, columns `cols` of each: image i's at
// dst[i*(k1 - k0) ..].
void im2col_images_row(const float* x, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, int64_t c, int64_t r,
                       int64_t t, const ColumnRange& cols, float* dst, const PaddingMasks& masks) {
  const int64_t width = cols.k1 - cols.k0, image = s.C * s.HW();
  const TapRange a = tap_range(s, r, t);
  const float* planes = x + (n0 * s.C + g * s.Cg() + c) * s.HW();  // image n0 + i's plane at + i * image
  for (int64_t i = 0; i < nb; ++i) im2col_row(planes + i * image, s, r, t, a, cols, dst + i * width, masks.row(t));
}

// col[(c*R + r)*S + s][i*PQ + p*Q + q] = x[n0+i, g*Cg + c, p*st - pad + r, q*st - pad + s] (0 in the padding).
// Threads take rows (c, r, s); a row's ranges and offsets serve all its images.
void im2col(const float* x, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, float* col) {
  const int64_t rows = s.CRSg(), ld = nb * s.PQ();
  const ColumnRange cols = whole_row(s);
  const PaddingMasks masks(s, cols);
  for_tap_rows(s, rows, rows > 1 && worth_forking(rows * ld), [&](int64_t row, int64_t c, int64_t r, int64_t t) {
    im2col_images_row(x, s, n0, nb, g, c, r, t, cols, col + row * ld, masks);
  });
}

// A block of im2col small enough to stay in cache between im2col and the GEMM that reads it (one thread):
// rows row0 .. row0 + rows - 1, columns `cols` of images n0 .. n0 + nb - 1, at
// dst[(row - row0)*nb*(k1 - k0) + i*(k1 - k0) + j - k0].
void im2col_block(const float* x, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, int64_t row0, int64_t rows,
                  const ColumnRange& cols, float* dst) {
  const int64_t ld = nb * (cols.k1 - cols.k0);
  const PaddingMasks masks(s, cols);
  walk_tap_rows(s, row0, row0 + rows, [&](int64_t row, int64_t c, int64_t r, int64_t t) {
    im2col_images_row(x, s, n0, nb, g, c, r, t, cols, dst + (row - row0) * ld, masks);
  });
}

// dx[n0+i, g*Cg + c] = sum over (r, s, p, q) of dcol scattered back (the adjoint of im2col). Where rows line
// up, each tap's row is added as one flat run after zeroing its elements whose column lies in the padding
// (col is the caller's workspace, and those elements have nowhere to go): the run adds them, as +0.f, to
// neighbouring elements of the same plane, which changes no bit (a plane starts at +0.f and so never holds
// -0.f), and every element still receives its terms in (r, s) order: the same bits as row by row.
void col2im(float* col, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, float* dx) {
  const int64_t Cg = s.Cg(), PQ = s.PQ(), ld = nb * PQ;
  const bool flat = rows_line_up(s);
  const PaddingMasks masks(s, whole_row(s));
#pragma omp parallel for collapse(2) schedule(static) if (worth_forking(Cg * s.RS() * ld))
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t c = 0; c < Cg; ++c) {
      float* plane = dx + ((n0 + i) * s.C + g * Cg + c) * s.HW();
      std::memset(plane, 0, sizeof(float) * s.HW());
      for (int64_t r = 0; r < s.R; ++r) {
        for (int64_t t = 0; t < s.S; ++t) {
          float* src = col + ((c * s.R + r) * s.S + t) * ld + i * PQ;
          const TapRange a = tap_range(s, r, t);
          if (flat && masks.row(t)) {  // padding elements added as +0.f, as if zeroed first
            const float_bits* bits = reinterpret_cast<const float_bits*>(src);
            const uint32_t* mask = masks.row(t);
            for (int64_t j = a.first; j < a.last; ++j) {
              const uint32_t u = bits[j] & mask[j];
              float v;
              std::memcpy(&v, &u, sizeof v);
              plane[j + a.shift] += v;
            }
            continue;
          }
          if (flat) {
            zero_padding_columns(src, s, a, whole_row(s));
            for (int64_t j = a.first; j < a.last; ++j) plane[j + a.shift] += src[j];
            continue;
          }
          const int64_t w0 = conv_in_coord(0, t, s.stride, s.pad);
          for (int64_t p = a.p_lo; p < a.p_hi; ++p) {
            float* dst = plane + conv_in_coord(p, r, s.stride, s.pad) * s.W;
            const float* row = src + p * s.Q;
            for (int64_t q = a.q_lo; q < a.q_hi; ++q) dst[w0 + q * s.stride] += row[q];
          }
        }
      }
    }
  }
}

// stage[k][i*PQ + pq] = t[n0+i, g*Kg + k, pq] (to_stage) or the reverse, plus bias.
void copy_group_maps(const ConvShape& s, int64_t n0, int64_t nb, int64_t g, const float* from, float* to,
                     bool to_stage, const float* bias) {
  const int64_t Kg = s.Kg(), PQ = s.PQ(), ld = nb * PQ;
#pragma omp parallel for collapse(2) schedule(static) if (worth_forking(Kg * ld))
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t k = 0; k < Kg; ++k) {
      const int64_t staged = k * ld + i * PQ, tensor = ((n0 + i) * s.K + g * Kg + k) * PQ;
      if (to_stage) {
        std::memcpy(to + staged, from + tensor, sizeof(float) * PQ);
      } else {
        const float add = bias ? bias[g * Kg + k] : 0.f;
        for (int64_t j = 0; j < PQ; ++j) to[tensor + j] = from[staged + j] + add;
      }
    }
  }
}

// dx of images n0 .. n0 + nb - 1 in group g, as one product: their dY_g staged side by side in `stage`
// (Kg x nb*PQ), dcol = W_g^T dY_g in `col` (CRgS x nb*PQ), then col2im. Both paths of the data gradient.
void data_gradient_of_images(const float* dy, const float* w, float* dx, const ConvShape& s, int64_t n0, int64_t nb,
                             int64_t g, float* col, float* stage) {
  const int64_t CRS = s.CRSg(), Kg = s.Kg(), ld = nb * s.PQ();
  copy_group_maps(s, n0, nb, g, dy, stage, true, nullptr);
  sgemm(CRS, ld, Kg, w + g * Kg * CRS, 1, CRS, stage, ld, 1, col, ld, false);
  col2im(col, s, n0, nb, g, dx);
}

void check_workspace(const ConvShape& s, ConvPass pass, int64_t have) {
  if (have < conv2d_workspace_floats(s, pass))
    throw KernelError("conv2d: workspace too small (" + std::to_string(have) + " floats, need " +
                      std::to_string(conv2d_workspace_floats(s, pass)) + ")");
}

// The per-image forward and the filter gradient cut each image's im2col into blocks that stay in L2 from
// im2col to the GEMM that reads them: a whole image's (conv2: 1200 x 729 floats, 3.5 MB) went out to L3
// and back, and its packing then cost as much as im2col itself. sgemm sums each element of C on its own,
// over kSgemmSlice-long slices of the reduction, so blocks cut anywhere across the reduction and at slice
// multiples along it give the same bits as one product (gemm_cpu.h).
constexpr int64_t kBlockCols = 288;  // forward: output positions per block (a multiple of every ISA's NR)
constexpr int64_t kBlockRows = 288;  // filter gradient: im2col rows (filter taps) per block

int64_t forward_block_floats(const ConvShape& s) {
  return std::min(s.CRSg(), kSgemmSlice) * std::min(s.PQ(), kBlockCols);
}
// Filter gradient: images whose positions, side by side, fit one kSgemmSlice of the reduction go together
// (from the shape alone, so the sums never depend on the thread count): the small preset's 7x7 maps made
// a 49-long reduction per image, which read and wrote all of dW once per 49 positions and transposed col
// in 49-row panels with a ragged last block; five images make one 245-long sum.
int64_t filter_images_per_item(const ConvShape& s) {
  return 2 * s.PQ() > kSgemmSlice ? 1 : std::max<int64_t>(1, std::min(s.N, kSgemmSlice / s.PQ()));
}

// One slot's buffer: an im2col block (and the items' staged dY when they hold several images).
int64_t filter_block_floats(const ConvShape& s) {
  const int64_t nb = filter_images_per_item(s);
  if (nb > 1) return (std::min(s.CRSg(), kBlockRows) + s.Kg()) * nb * s.PQ();
  return std::min(s.CRSg(), kBlockRows) * std::min(s.PQ(), kSgemmSlice);
}

// Images per item on the per-image path. Small maps are taken several images at a time, as one product
// nb*P*Q columns wide staged in the workspace: one image of the small preset's 7x7 maps made a 49-column
// product, whose last column took a whole register tile, and packed the filters (A) again for 49 columns
// of work. As many images as fill a block, in a number of items that the threads share evenly. Only
// which thread computes a column changes, and each column's sum is the same: the same bits. Depends on
// cpu_threads_available(), so call it (and per_image_floats) outside the parallel region.
int64_t images_per_item(const ConvShape& s) {
  const int64_t PQ = s.PQ();
  if (2 * PQ > kBlockCols || s.N < 2) return 1;
  const int64_t threads = cpu_threads_available();
  int64_t items = (s.N + kBlockCols / PQ - 1) / (kBlockCols / PQ);  // per group
  while ((items * s.groups) % threads != 0 && items < s.N) ++items;
  return (s.N + items - 1) / items;
}

// One thread's buffer on the per-image path: a forward block (and its staged output for several images),
// or the items' whole dcol (col2im reads it; and the staged dY for several images).
int64_t per_image_floats(const ConvShape& s, ConvPass pass) {
  const int64_t nb = images_per_item(s), staged = nb > 1 ? s.Kg() * nb * s.PQ() : 0;
  if (pass == ConvPass::forward)
    return (nb > 1 ? std::min(s.CRSg(), kSgemmSlice) * nb * s.PQ() : forward_block_floats(s)) + staged;
  return s.CRSg() * nb * s.PQ() + staged;
}

// Threads for the per-image path (0: use the batched one): enough work to be worth a parallel region,
// enough (image, group) pairs to keep every thread busy, and a workspace with one buffer per thread.
int64_t per_image_threads(const ConvShape& s, ConvPass pass, int64_t workspace_floats) {
  if (s.N * s.K * s.CRSg() * s.PQ() < (int64_t(1) << 20)) return 0;
  const int64_t threads =
      std::min(cpu_threads_available(), workspace_floats / std::max<int64_t>(1, per_image_floats(s, pass)));
  return threads >= 2 && s.N * s.groups >= 2 * threads ? threads : 0;
}

// Filter gradient: images are dealt round-robin to this many partial sums (from the shape alone, so the
// summation order never depends on the thread count), each with its own im2col block and a private dW;
// the slots run in parallel with no barrier until the final, fixed-order sum of the slots.
constexpr int64_t kMaxFilterSlots = 8;
constexpr int64_t kFilterBudgetFloats = int64_t(1) << 23;  // 32 MiB

int64_t filter_items(const ConvShape& s) {
  const int64_t nb = filter_images_per_item(s);
  return (s.N + nb - 1) / nb;
}

int64_t filter_slots(const ConvShape& s) {
  const int64_t per_slot = s.K * s.CRSg() + filter_block_floats(s);
  return std::max<int64_t>(1, std::min<int64_t>({filter_items(s), kMaxFilterSlots, kFilterBudgetFloats / per_slot}));
}

// Filter gradient by tap tiles, where a slot's partial dW would be large: the slots' sums went out to memory and
// back for every image, and were read once more to be added (conv3 at batch 8: 8 slots of 3.5 MB; its filter
// gradient took 1.2x its forward's time on one thread or two). Instead each thread takes tiles of dW, a group's
// Kg filters by a block of its taps, and sums every image into its tile, in image order: the tile stays in cache,
// with nothing to add at the end. Chosen by the shape alone (the two schemes sum in different orders); the
// tiles' width follows the thread count, which moves no sum (a tile is a block of the GEMM's columns).
constexpr int64_t kSlotMaxFloats = int64_t(1) << 16;  // 256 KiB of dW: fits L2 beside the GEMM's panels
constexpr int64_t kTapTileStep = 48;  // tile widths: multiples of every ISA's NR (48, 16, 12)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool filter_by_tap_tiles(const ConvShape& s) {
  return s.K * s.CRSg() > kSlotMaxFloats && s.groups * ceil_div(s.CRSg(), kTapTileStep) >= 8;
}

// The widest tile (at most kBlockRows, the workspace's block) that still gives every thread about four.
int64_t tap_tile_width(const ConvShape& s, int64_t threads) {
  int64_t width = kBlockRows;
  while (width > kTapTileStep && s.groups * ceil_div(s.CRSg(), width) < 4 * threads) width -= kTapTileStep;
  return width;
}

// dW_g's taps j0 .. j0 + nc - 1 (at `out`, row stride CRSg) += the share of images n .. n + m - 1, or = it when
// `first`: an item of several images as one slice of the reduction, its dY staged in `stage` by the caller; a
// lone image (stage null) slice by slice from dy itself. Both filter-gradient schemes sum through it.
void add_filter_block(const float* dy, const float* x, const ConvShape& s, int64_t n, int64_t m, int64_t g,
                      int64_t j0, int64_t nc, const float* stage, float* col, float* out, bool first) {
  const int64_t Kg = s.Kg(), CRS = s.CRSg(), PQ = s.PQ();
  if (stage) {
    const int64_t ld = m * PQ;
    im2col_block(x, s, n, m, g, j0, nc, whole_row(s), col);
    sgemm(Kg, nc, ld, stage, ld, 1, col, 1, ld, out, CRS, !first);
    return;
  }
  const float* dy_g = dy + (n * s.K + g * Kg) * PQ;
  for (int64_t k0 = 0; k0 < PQ; k0 += kSgemmSlice) {
    const ColumnRange cols = column_range(s, k0, std::min(kSgemmSlice, PQ - k0));
    const int64_t kc = cols.k1 - cols.k0;
    im2col_block(x, s, n, 1, g, j0, nc, cols, col);
    sgemm(Kg, nc, kc, dy_g + k0, PQ, 1, col, 1, kc, out, CRS, !first || k0 > 0);
  }
}

}  // namespace

int64_t conv2d_workspace_floats(const ConvShape& s, ConvPass pass) {
  if (pass == ConvPass::backward_bias || s.N == 0) return 0;
  if (pass == ConvPass::backward_filter) {
    if (filter_by_tap_tiles(s)) return cpu_threads_available() * filter_block_floats(s);
    const int64_t slots = filter_slots(s);
    return slots * filter_block_floats(s) + (slots > 1 ? slots * s.K * s.CRSg() : 0);
  }
  const int64_t batched = (s.CRSg() + s.Kg()) * chunk_images(s) * s.PQ();
  return std::max(batched, cpu_threads_available() * per_image_floats(s, pass));
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace,
                    int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::forward, workspace_floats);
  const int64_t nb_max = chunk_images(s), CRS = s.CRSg(), Kg = s.Kg();
  if (const int64_t threads = per_image_threads(s, ConvPass::forward, workspace_floats)) {
    const int64_t PQ = s.PQ(), nb = images_per_item(s), items = (s.N + nb - 1) / nb * s.groups;
    const int64_t per_thread = per_image_floats(s, ConvPass::forward);  // not inside: it would see 1 thread
#pragma omp parallel num_threads(threads)
    {
      float* col = workspace + thread_index() * per_thread;
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t n = item / s.groups * nb, g = item % s.groups;
        if (nb > 1) {  // images n .. n + m - 1 side by side, staged after the im2col block
          const int64_t m = std::min(nb, s.N - n), ld = m * PQ;
          float* stage = col + std::min(CRS, kSgemmSlice) * nb * PQ;
          for (int64_t k0 = 0; k0 < CRS; k0 += kSgemmSlice) {
            const int64_t kc = std::min(kSgemmSlice, CRS - k0);
            im2col_block(x, s, n, m, g, k0, kc, whole_row(s), col);
            sgemm(Kg, ld, kc, w + g * Kg * CRS + k0, CRS, 1, col, ld, 1, stage, ld, k0 > 0);
          }
          copy_group_maps(s, n, m, g, stage, y, false, b);
          continue;
        }
        float* out = y + (n * s.K + g * Kg) * PQ;
        for (int64_t j0 = 0; j0 < PQ; j0 += kBlockCols) {
          const ColumnRange cols = column_range(s, j0, std::min(kBlockCols, PQ - j0));
          const int64_t nc = cols.k1 - cols.k0;
          for (int64_t k0 = 0; k0 < CRS; k0 += kSgemmSlice) {
            const int64_t kc = std::min(kSgemmSlice, CRS - k0);
            im2col_block(x, s, n, 1, g, k0, kc, cols, col);
            sgemm(Kg, nc, kc, w + g * Kg * CRS + k0, CRS, 1, col, nc, 1, out + j0, PQ, k0 > 0);
          }
        }
        if (b)
          for (int64_t k = 0; k < Kg; ++k)
            for (int64_t j = 0; j < PQ; ++j) out[k * PQ + j] += b[g * Kg + k];
      }
    }
    return;
  }
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), ld = nb * s.PQ();
    float* col = workspace;
    float* stage = workspace + CRS * ld;
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(x, s, n0, nb, g, col);
      sgemm(Kg, ld, CRS, w + g * Kg * CRS, CRS, 1, col, ld, 1, stage, ld, false);
      copy_group_maps(s, n0, nb, g, stage, y, false, b);
    }
  }
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace,
                          int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::backward_data, workspace_floats);
  const int64_t nb_max = chunk_images(s), CRS = s.CRSg(), Kg = s.Kg();
  if (const int64_t threads = per_image_threads(s, ConvPass::backward_data, workspace_floats)) {
    const int64_t PQ = s.PQ(), nb = images_per_item(s), items = (s.N + nb - 1) / nb * s.groups;
    const int64_t per_thread = per_image_floats(s, ConvPass::backward_data);  // not inside: 1 thread
#pragma omp parallel num_threads(threads)
    {
      float* col = workspace + thread_index() * per_thread;
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t n = item / s.groups * nb, g = item % s.groups;
        if (nb > 1) {  // images n .. n + m - 1 side by side: dY staged after dcol
          data_gradient_of_images(dy, w, dx, s, n, std::min(nb, s.N - n), g, col, col + CRS * nb * PQ);
          continue;
        }
        sgemm(CRS, PQ, Kg, w + g * Kg * CRS, 1, CRS, dy + (n * s.K + g * Kg) * PQ, PQ, 1, col, PQ, false);
        col2im(col, s, n, 1, g, dx);
      }
    }
    return;
  }
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0);
    for (int64_t g = 0; g < s.groups; ++g)
      data_gradient_of_images(dy, w, dx, s, n0, nb, g, workspace, workspace + CRS * nb * s.PQ());
  }
}

void conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* workspace,
                            int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::backward_filter, workspace_floats);
  const int64_t CRS = s.CRSg(), Kg = s.Kg(), PQ = s.PQ(), n_dw = s.K * CRS;
  if (s.N == 0) {
    std::memset(dw, 0, sizeof(float) * n_dw);
    return;
  }
  // An item: nb images (a lone image when nb == 1); several go as one product, their dY staged after the block.
  const int64_t block = filter_block_floats(s), nb = filter_images_per_item(s), items = filter_items(s);
  const auto staged_after = [&](float* col) { return nb > 1 ? col + std::min(CRS, kBlockRows) * nb * PQ : nullptr; };
  if (filter_by_tap_tiles(s)) {
    const int64_t threads = std::max<int64_t>(1, std::min(cpu_threads_available(), workspace_floats / block));
    const int64_t width = tap_tile_width(s, threads), per_group = ceil_div(CRS, width), tiles = s.groups * per_group;
    const bool parallel = threads > 1 && s.N * s.K * CRS * PQ >= (int64_t(1) << 20);
#pragma omp parallel num_threads(threads) if (parallel)
    {
      float* col = workspace + thread_index() * block;
      float* stage = staged_after(col);
#pragma omp for schedule(dynamic)
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t g = tile / per_group, j0 = tile % per_group * width, nc = std::min(width, CRS - j0);
        for (int64_t item = 0; item < items; ++item) {
          const int64_t n = item * nb, m = std::min(nb, s.N - n);
          if (stage) copy_group_maps(s, n, m, g, dy, stage, true, nullptr);
          add_filter_block(dy, x, s, n, m, g, j0, nc, stage, col, dw + g * Kg * CRS + j0, item == 0);
        }
      }
    }
    return;
  }
  const int64_t slots = filter_slots(s);
  float* partial = workspace + slots * block;  // slot t's sum at partial + t*n_dw (dw itself for one slot)
  const bool parallel = slots > 1 && s.N * s.K * CRS * PQ >= (int64_t(1) << 20) && cpu_threads_available() > 1;
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t slot = 0; slot < slots; ++slot) {
    float* col = workspace + slot * block;
    float* stage = staged_after(col);
    float* sum = slots > 1 ? partial + slot * n_dw : dw;
    for (int64_t item = slot; item < items; item += slots) {
      const int64_t n = item * nb, m = std::min(nb, s.N - n);
      for (int64_t g = 0; g < s.groups; ++g) {
        if (stage) copy_group_maps(s, n, m, g, dy, stage, true, nullptr);
        for (int64_t j0 = 0; j0 < CRS; j0 += kBlockRows)
          add_filter_block(dy, x, s, n, m, g, j0, std::min(kBlockRows, CRS - j0), stage, col, sum + g * Kg * CRS + j0,
                           item == slot);
      }
    }
  }
  if (slots > 1) {
#pragma omp parallel for schedule(static) if (worth_forking(n_dw * slots))
    for (int64_t i = 0; i < n_dw; ++i) {
      float acc = partial[i];
      for (int64_t t = 1; t < slots; ++t) acc += partial[t * n_dw + i];
      dw[i] = acc;
    }
  }
}

void conv2d_backward_bias(const float* dy, float* db, const ConvShape& s, float*, int64_t, Stream) {
  // kLanes running double sums, element j of each plane into lane j % kLanes (a plane's tail into the first
  // lanes), the lanes then added in order: a fixed order, so the same bits on every run, that GCC vectorises
  // (4 independent chains of 8 doubles with AVX-512), where one running sum was a chain of dependent adds,
  // one element per add's latency (conv1 of the small preset: 0.115 ms a call).
  constexpr int64_t kLanes = 32;
  const int64_t PQ = s.PQ(), body = PQ / kLanes * kLanes;
#pragma omp parallel for schedule(static) if (worth_forking(s.K * s.N * PQ))
  for (int64_t k = 0; k < s.K; ++k) {
    double lane[kLanes] = {};
    for (int64_t n = 0; n < s.N; ++n) {
      const float* plane = dy + (n * s.K + k) * PQ;
      for (int64_t j = 0; j < body; j += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) lane[l] += plane[j + l];
      for (int64_t j = body; j < PQ; ++j) lane[j - body] += plane[j];
    }
    double sum = 0;
    for (int64_t l = 0; l < kLanes; ++l) sum += lane[l];
    db[k] = static_cast<float>(sum);
  }
}

}  // namespace pya::cpu
