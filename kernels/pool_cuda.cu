// Max-pooling on the GPU: shared-memory tiles, 32-bit index math, no division
// in the per-element loops.
//
// A block copies into shared memory the input rows it needs: whole planes (several
// small ones per block, so each block has about 1024 inputs: pool2 and pool5 pack
// 2 and 7 at batch 128), or a band of rows of one plane when a plane is too large
// for 24 KB or there are too few planes to fill the GPU. Consecutive planes' rows
// follow each other in memory, so the copy is one coalesced linear read, and each
// x element is read from global memory once instead of by each of the up to 4
// windows (9 reads each) that use it.
//  - forward: each thread takes outputs in row-major order and scans its window in
//    the tile.
//  - backward: phase 1 copies x for every window covering the block's input rows,
//    and those windows' dy; phase 2 finds each window's winner ONCE
//    (pool_window_argmax, the rule the CPU uses); phase 3 gives each input the sum,
//    in row-major window order, of dy over the covering windows it wins
//    (pool_gather). The CPU's scatter adds the same terms in the same order, so the
//    results stay bit-identical to the CPU's, and with no atomics identical run to run.
// Covering ranges come from per-row and per-column tables in shared memory, and
// loop indices advance by carrying. Planes too wide for even a one-row band in
// 48 KB (W beyond about 1300 backward, 4000 forward, for 3x3 windows, stride 2) or
// too large for int offsets take the general one-thread-per-element kernels.
//
// With stored winners: the tiled (or general) forward also writes each window's
// winner byte, next to its y (consecutive threads, consecutive bytes); the backward
// from them needs no x and no tile: one thread per input, a few inputs per thread
// in a grid-stride loop (consecutive threads, consecutive dx), each gathering dy
// over its covering windows whose byte names it (pool_grad_from_winners: the terms
// and order of the CPU's scatter from the bytes, so the same bits). Neighbouring
// threads read the same few dy and bytes, which L1 serves.
#include <climits>

#include "cuda_check.h"
#include "pool.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTileBytes = 24 * 1024;     // preferred shared memory per block (several blocks per SM)
constexpr int64_t kMaxTileBytes = 48 * 1024;  // the per-block limit without an opt-in
constexpr int64_t kWantBlocks = 1024;         // split planes into bands until there are this many blocks...
constexpr int64_t kMinBandRows = 8;           // ...but not into bands thinner than this

// ---- tiled kernels ----------------------------------------------------------------------------------------------

// Copies n contiguous floats into shared memory with kLoadsInFlight loads in flight per thread: a tile of up to
// kLoadsInFlight * kThreads floats costs one round trip to memory (pool2's and pool5's tiles hold ~1200-1500, pool1's
// 3025 take two). The loop it replaces issued 4 loads, waited, then took the rest one at a time: 3 round trips for
// pool2's tiles and 6 for pool1's, each block idle for all of them.
constexpr int kLoadsInFlight = 8;
__device__ __forceinline__ void load_tile(float* dst, const float* __restrict__ src, int n) {
  for (int base = threadIdx.x; base < n; base += kLoadsInFlight * kThreads) {
    float v[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      int i = base + u * kThreads;
      v[u] = i < n ? src[i] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      int i = base + u * kThreads;
      if (i < n) dst[i] = v[u];
    }
  }
}

// Row and column of this thread's first element of a row-major (., cols) run, and
// the step that advances by kThreads elements: (row, col) += (dq, dr), carrying.
struct Walk {
  int row, col, dq, dr;
  __device__ explicit Walk(int cols) {
    row = threadIdx.x / cols;
    col = threadIdx.x - row * cols;
    dq = kThreads / cols;
    dr = kThreads - dq * cols;
  }
  __device__ void next(int cols) {
    col += dr;
    row += dq;
    if (col >= cols) {
      col -= cols;
      ++row;
    }
  }
};

// What a block works on in one iteration. Whole mode: `count` consecutive whole
// planes (small planes share a block, so that it has enough elements). Band mode:
// one band of `band` rows of one plane. Both see a "tall image" of rows W wide:
// consecutive planes' rows follow each other in memory, so a tile is always one
// contiguous run of x.
struct Tiling {
  int whole;      // 1: whole mode, 0: band mode
  int count;      // whole mode: planes per block
  int band;       // band mode: rows per band (output rows forward, input rows backward)
  int64_t bands;  // band mode: bands per plane
  __host__ __device__ int64_t iterations(int64_t planes) const { return whole ? (planes + count - 1) / count : planes * bands; }
};

// kSize: the window size when known at compile time (AlexNet's 3), else 0. kWinners: also write each window's
// winner byte (its tap dh * size + dw) to `winner`, laid out like y; the plain forward passes null.
template <int kSize, bool kWinners>
__global__ void __launch_bounds__(kThreads)
    max_pool_forward_tiled(const float* __restrict__ x, float* __restrict__ y, uint8_t* __restrict__ winner,
                           int64_t planes, PoolGeometry g, Tiling t, int max_tile_rows) {
  extern __shared__ float smem[];
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int OH = static_cast<int>(g.OH), OW = static_cast<int>(g.OW);
  const int s = g.stride, size = kSize > 0 ? kSize : g.size;
  float* xs = smem;                                            // max_tile_rows x W inputs
  int* win_row = reinterpret_cast<int*>(xs + max_tile_rows * W);  // per output row: its windows' first row in xs, times W

  const int64_t total = t.iterations(planes);
  // Block-uniform loop: every thread reaches every barrier.
  for (int64_t b = blockIdx.x; b < total; b += gridDim.x) {
    int64_t x_at, y_at;
    int orows, xrows;
    if (t.whole) {
      int64_t p0 = b * t.count;
      int np = static_cast<int>(min(int64_t(t.count), planes - p0));
      x_at = p0 * g.H * g.W;
      y_at = p0 * g.OH * g.OW;
      orows = np * OH;
      xrows = np * H;
      for (int r = threadIdx.x; r < orows; r += kThreads) {
        int q = r / OH;
        win_row[r] = (q * H + (r - q * OH) * s) * W;
      }
    } else {
      int64_t p = b / t.bands;
      int oh0 = static_cast<int>(b - p * t.bands) * t.band;
      orows = min(t.band, OH - oh0);
      xrows = (orows - 1) * s + size;
      x_at = p * g.H * g.W + int64_t(oh0) * s * W;
      y_at = p * g.OH * g.OW + int64_t(oh0) * OW;
      for (int r = threadIdx.x; r < orows; r += kThreads) win_row[r] = r * s * W;
    }
    load_tile(xs, x + x_at, xrows * W);
    __syncthreads();
    float* yb = y + y_at;
    Walk it(OW);
    for (int o = threadIdx.x; o < orows * OW; o += kThreads, it.next(OW)) {
      const float* win = xs + win_row[it.row] + it.col * s;
      if constexpr (kWinners) {
        PoolWinner<int> best = pool_window_winner<int>(win, W, size);
        yb[o] = win[best.at];
        winner[y_at + o] = static_cast<uint8_t>(best.tap);
      } else {
        yb[o] = win[pool_window_argmax<int>(win, W, size)];
      }
    }
    __syncthreads();  // the next iteration overwrites the tile and the table
  }
}

template <int kSize>
__global__ void __launch_bounds__(kThreads)
    max_pool_backward_tiled(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ dx,
                            int64_t planes, PoolGeometry g, Tiling t, int max_tile_rows, int max_win_rows,
                            int max_rows) {
  extern __shared__ float smem[];
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int OH = static_cast<int>(g.OH), OW = static_cast<int>(g.OW);
  const int s = g.stride, size = kSize > 0 ? kSize : g.size;
  float* xs = smem;                                               // max_tile_rows x W inputs
  int* winner = reinterpret_cast<int*>(xs + max_tile_rows * W);   // max_win_rows x OW: each window's winner in xs
  float* dys = reinterpret_cast<float*>(winner + max_win_rows * OW);  // max_win_rows x OW: each window's dy
  int* win_row = reinterpret_cast<int*>(dys + max_win_rows * OW);     // max_win_rows: a window row's first row in xs, times W
  int* col_first = win_row + max_win_rows;                            // W: the window columns covering a column
  int* col_last = col_first + W;
  int* row_first = col_last + W;  // max_rows: the window rows (indices into win_row) covering an input row
  int* row_last = row_first + max_rows;

  // The same in every iteration; the first barrier below orders these writes before their reads.
  for (int w = threadIdx.x; w < W; w += kThreads) pool_covering<int>(w, size, s, OW, col_first[w], col_last[w]);

  const int64_t total = t.iterations(planes);
  for (int64_t b = blockIdx.x; b < total; b += gridDim.x) {
    int64_t x_at, dy_at, dx_at;
    int rows, nwin, xrows, at0;  // at0: the first input row's offset in xs
    // Phase 1: the tables, and the inputs the windows read.
    if (t.whole) {
      int64_t p0 = b * t.count;
      int np = static_cast<int>(min(int64_t(t.count), planes - p0));
      x_at = dx_at = p0 * g.H * g.W;
      dy_at = p0 * g.OH * g.OW;
      rows = xrows = np * H;
      nwin = np * OH;
      at0 = 0;
      for (int r = threadIdx.x; r < rows; r += kThreads) {
        int q = r / H, f, l;
        pool_covering<int>(r - q * H, size, s, OH, f, l);
        row_first[r] = q * OH + f;
        row_last[r] = q * OH + l;  // f > l (no window) stays an empty range
      }
      for (int r = threadIdx.x; r < nwin; r += kThreads) {
        int q = r / OH;
        win_row[r] = (q * H + (r - q * OH) * s) * W;
      }
    } else {
      int64_t p = b / t.bands;
      int h0 = static_cast<int>(b - p * t.bands) * t.band;
      rows = min(t.band, H - h0);
      // The windows covering rows h0 .. h0 + rows - 1 (both ends of the range are monotonic in the row).
      int wo0, wo1, unused;
      pool_covering<int>(h0, size, s, OH, wo0, unused);
      pool_covering<int>(h0 + rows - 1, size, s, OH, unused, wo1);
      nwin = wo1 >= wo0 ? wo1 - wo0 + 1 : 0;  // 0: rows below the last window, all gradients zero
      xrows = nwin > 0 ? (nwin - 1) * s + size : 0;
      int xr0 = nwin > 0 ? wo0 * s : h0;  // the tile's first input row
      x_at = p * g.H * g.W + int64_t(xr0) * W;
      dx_at = p * g.H * g.W + int64_t(h0) * W;
      dy_at = p * g.OH * g.OW + int64_t(nwin > 0 ? wo0 : 0) * OW;
      at0 = (h0 - xr0) * W;
      for (int r = threadIdx.x; r < rows; r += kThreads) {
        int f, l;
        pool_covering<int>(h0 + r, size, s, OH, f, l);
        row_first[r] = f - wo0;
        row_last[r] = l - wo0;
      }
      for (int r = threadIdx.x; r < nwin; r += kThreads) win_row[r] = r * s * W;
    }
    load_tile(xs, x + x_at, xrows * W);
    load_tile(dys, dy + dy_at, nwin * OW);  // the windows' dy, contiguous too: both reads in flight at once
    __syncthreads();

    // Phase 2: each window's winner, once.
    Walk wi(OW);
    for (int k = threadIdx.x; k < nwin * OW; k += kThreads, wi.next(OW)) {
      int top_left = win_row[wi.row] + wi.col * s;
      winner[k] = top_left + pool_window_argmax<int>(xs + top_left, W, size);
    }
    __syncthreads();

    // Phase 3: each input gathers the windows it wins.
    float* dxb = dx + dx_at;
    Walk it(W);
    for (int e = threadIdx.x; e < rows * W; e += kThreads, it.next(W)) {
      dxb[e] = pool_gather<int>(winner, dys, OW, row_first[it.row], row_last[it.row], col_first[it.col],
                                col_last[it.col], at0 + e);
    }
    __syncthreads();  // the next iteration overwrites the tables and the tile
  }
}

// ---- general kernels (planes too wide for the tiles) -----------------------------------------------------------

template <bool kWinners>
__global__ void max_pool_forward_general(const float* __restrict__ x, float* __restrict__ y,
                                         uint8_t* __restrict__ winner, int64_t planes, PoolGeometry g) {
  int64_t out = g.OH * g.OW, n = planes * out;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t p = i / out, o = i % out;
    const float* xp = x + p * g.H * g.W;
    if constexpr (kWinners) {
      int64_t oh = o / g.OW, ow = o % g.OW, top_left = oh * g.stride * g.W + ow * g.stride;
      PoolWinner<int64_t> best = pool_window_winner<int64_t>(xp + top_left, g.W, g.size);
      y[i] = xp[top_left + best.at];
      winner[i] = static_cast<uint8_t>(best.tap);
    } else {
      y[i] = xp[pool_argmax(xp, g, o / g.OW, o % g.OW)];
    }
  }
}

__global__ void max_pool_backward_general(const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ y, float* __restrict__ dx, int64_t planes,
                                          PoolGeometry g) {
  int64_t in = g.H * g.W, out = g.OH * g.OW, n = planes * in;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t p = i / in, e = i % in;
    dx[i] = pool_input_grad(x + p * in, y + p * out, dy + p * out, g, e / g.W, e % g.W);
  }
}

// ---- backward from stored winners ------------------------------------------------------------------------------

constexpr int kInputsPerThread = 4;  // grid-stride iterations per thread: the first one's divisions amortised

// The grid's stride over the inputs, split into planes, rows and columns once on the host, so that each
// thread carries its (plane, row, column) from one input to the next without dividing.
struct GridStep {
  int64_t inputs;  // blocks * kThreads
  int64_t planes, rows, cols;
};

// I: the index type, int when every flat index (and one grid step past the last) fits, so the first
// position's divisions and all the index math are 32-bit. kSize, kStride: the window's size and stride when
// known at compile time (AlexNet's 3 and 2; the covering windows then divide by a constant), else 0.
template <class I, int kSize, int kStride>
__global__ void __launch_bounds__(kThreads)
    max_pool_backward_from_winners(const float* __restrict__ dy, const uint8_t* __restrict__ winner,
                                   float* __restrict__ dx, int64_t planes, PoolGeometry g, GridStep step) {
  const I H = static_cast<I>(g.H), W = static_cast<I>(g.W), OH = static_cast<I>(g.OH), OW = static_cast<I>(g.OW);
  const int size = kSize > 0 ? kSize : g.size, s = kStride > 0 ? kStride : g.stride;
  const I in = H * W, out = OH * OW, n = static_cast<I>(planes) * in;
  const I step_inputs = static_cast<I>(step.inputs), step_planes = static_cast<I>(step.planes);
  const I step_rows = static_cast<I>(step.rows), step_cols = static_cast<I>(step.cols);
  I i = static_cast<I>(blockIdx.x) * kThreads + static_cast<I>(threadIdx.x);
  if (i >= n) return;
  I p = i / in, e = i - p * in, h = e / W, w = e - h * W;
  for (; i < n; i += step_inputs) {
    dx[i] = pool_input_grad_from_winners<I>(winner + p * out, dy + p * out, OH, OW, h, w, size, s);
    p += step_planes;
    h += step_rows;
    w += step_cols;
    if (w >= W) {
      w -= W;
      ++h;
    }
    if (h >= H) {
      h -= H;
      ++p;
    }
  }
}

// ---- planning ---------------------------------------------------------------------------------------------------

struct Plan {
  Tiling t{0, 1, 0, 0};
  int64_t smem = 0;  // bytes of shared memory; 0: no tiling fits, use the general kernels
  int64_t tile_rows = 0, win_rows = 0, rows = 0;  // the largest iteration's x rows, window rows, input rows
};

// Whether a plane's offsets fit the tiled kernels' int arithmetic (with room to spare).
bool fits_int(const PoolGeometry& g) { return g.H * g.W <= INT_MAX / 4; }

constexpr int64_t kF = sizeof(float);

int64_t forward_bytes(const PoolGeometry& g, int64_t tile_rows, int64_t out_rows) {
  return kF * (tile_rows * g.W + out_rows);
}
int64_t backward_bytes(const PoolGeometry& g, int64_t tile_rows, int64_t win_rows, int64_t rows) {
  return kF * (tile_rows * g.W + win_rows * (2 * g.OW + 1) + 2 * g.W + 2 * rows);
}

Plan forward_band(const PoolGeometry& g, int64_t band) {
  Plan pl;
  pl.t = Tiling{0, 1, static_cast<int>(band), (g.OH + band - 1) / band};
  pl.tile_rows = (band - 1) * g.stride + g.size;
  pl.win_rows = band;
  pl.smem = forward_bytes(g, pl.tile_rows, band);
  return pl;
}

// Exact sizes over every band (the last may be shorter, and a band's windows depend on its position).
Plan backward_band(const PoolGeometry& g, int64_t band) {
  Plan pl;
  pl.t = Tiling{0, 1, static_cast<int>(band), (g.H + band - 1) / band};
  pl.rows = band;
  for (int64_t h0 = 0; h0 < g.H; h0 += band) {
    int64_t h1 = h0 + band < g.H ? h0 + band : g.H, wo0, wo1, unused;
    pool_covering<int64_t>(h0, g.size, g.stride, g.OH, wo0, unused);
    pool_covering<int64_t>(h1 - 1, g.size, g.stride, g.OH, unused, wo1);
    if (wo1 < wo0) continue;
    int64_t nwin = wo1 - wo0 + 1, xrows = (nwin - 1) * g.stride + g.size;
    if (nwin > pl.win_rows) pl.win_rows = nwin;
    if (xrows > pl.tile_rows) pl.tile_rows = xrows;
  }
  pl.smem = backward_bytes(g, pl.tile_rows, pl.win_rows, band);
  return pl;
}

// Whole planes, `count` per block: the fewest that give a block kElemsPerBlock inputs, as long as
// there stay kWantBlocks blocks and the tile fits the preferred budget.
constexpr int64_t kElemsPerBlock = 4 * kThreads;

Plan whole_planes(const PoolGeometry& g, int64_t planes, bool backward) {
  auto bytes = [&](int64_t n) {
    return backward ? backward_bytes(g, n * g.H, n * g.OH, n * g.H) : forward_bytes(g, n * g.H, n * g.OH);
  };
  int64_t n = (kElemsPerBlock + g.H * g.W - 1) / (g.H * g.W);
  int64_t by_blocks = planes / kWantBlocks;
  if (n > by_blocks) n = by_blocks;
  while (n > 1 && bytes(n) > kTileBytes) --n;
  if (n < 1) n = 1;
  Plan pl;
  pl.t = Tiling{1, static_cast<int>(n), 0, 0};
  pl.tile_rows = n * g.H;
  pl.win_rows = n * g.OH;
  pl.rows = n * g.H;
  pl.smem = bytes(n);
  return pl;
}

// Bands: the tallest that fits the preferred budget and still gives kWantBlocks blocks, halving
// from the whole plane (bands of one row may use up to the hard limit). A band of the whole plane
// becomes whole mode, which packs small planes together.
template <class MakeBand>
Plan choose_plan(const PoolGeometry& g, int64_t rows, int64_t planes, bool backward, MakeBand make) {
  if (!fits_int(g)) return Plan{};
  int64_t band = rows;
  Plan pl = make(band);
  while (band > 1) {
    int64_t half = (band + 1) / 2;
    bool too_big = pl.smem > kTileBytes;
    bool too_few = planes * pl.t.bands < kWantBlocks && half >= kMinBandRows;
    if (!too_big && !too_few) break;
    band = half;
    pl = make(band);
  }
  if (band == rows) {
    Plan whole = whole_planes(g, planes, backward);
    if (whole.smem <= kMaxTileBytes) return whole;
  }
  if (pl.smem > kMaxTileBytes) pl.smem = 0;
  return pl;
}

}  // namespace

namespace {

// The forward, with (winner non-null) or without the winner bytes: the same plan and kernels either way.
void forward(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W, int size, int stride,
             Stream stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  if (planes * g.OH * g.OW == 0) return;
  Plan pl = choose_plan(g, g.OH, planes, false, [&](int64_t band) { return forward_band(g, band); });
  if (pl.smem > 0) {
    unsigned int blocks = grid_for(pl.t.iterations(planes), 1);
    int tile_rows = static_cast<int>(pl.tile_rows);
    size_t smem = static_cast<size_t>(pl.smem);
    if (winner && size == 3)
      max_pool_forward_tiled<3, true><<<blocks, kThreads, smem, stream>>>(x, y, winner, planes, g, pl.t, tile_rows);
    else if (winner)
      max_pool_forward_tiled<0, true><<<blocks, kThreads, smem, stream>>>(x, y, winner, planes, g, pl.t, tile_rows);
    else if (size == 3)
      max_pool_forward_tiled<3, false><<<blocks, kThreads, smem, stream>>>(x, y, winner, planes, g, pl.t, tile_rows);
    else
      max_pool_forward_tiled<0, false><<<blocks, kThreads, smem, stream>>>(x, y, winner, planes, g, pl.t, tile_rows);
  } else {
    unsigned int blocks = grid_for(planes * g.OH * g.OW, kThreads);
    if (winner)
      max_pool_forward_general<true><<<blocks, kThreads, 0, stream>>>(x, y, winner, planes, g);
    else
      max_pool_forward_general<false><<<blocks, kThreads, 0, stream>>>(x, y, winner, planes, g);
  }
  PYA_CHECK_LAUNCH("max_pool_forward");
}

}  // namespace

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream) {
  forward(x, y, nullptr, planes, H, W, size, stride, stream);
}

void max_pool_forward_with_indices(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W,
                                   int size, int stride, Stream stream) {
  forward(x, y, winner, planes, H, W, size, stride, stream);
}

void max_pool_backward_from_indices(const float* dy, const uint8_t* winner, float* dx, int64_t planes, int64_t H,
                                    int64_t W, int size, int stride, Stream stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  const int64_t in = H * W, n = planes * in;
  if (n == 0) return;
  const unsigned int blocks = grid_for(n, kThreads * kInputsPerThread);
  GridStep step;
  step.inputs = int64_t(blocks) * kThreads;
  step.planes = step.inputs / in;
  const int64_t within = step.inputs - step.planes * in;
  step.rows = within / W;
  step.cols = within - step.rows * W;
  const bool narrow = n <= INT_MAX - step.inputs;  // i + step never overflows an int
  if (size == 3 && stride == 2 && narrow)
    max_pool_backward_from_winners<int, 3, 2><<<blocks, kThreads, 0, stream>>>(dy, winner, dx, planes, g, step);
  else if (narrow)
    max_pool_backward_from_winners<int, 0, 0><<<blocks, kThreads, 0, stream>>>(dy, winner, dx, planes, g, step);
  else
    max_pool_backward_from_winners<int64_t, 0, 0><<<blocks, kThreads, 0, stream>>>(dy, winner, dx, planes, g, step);
  PYA_CHECK_LAUNCH("max_pool_backward_from_indices");
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  if (planes * H * W == 0) return;
  Plan pl = choose_plan(g, H, planes, true, [&](int64_t band) { return backward_band(g, band); });
  if (pl.smem > 0) {
    unsigned int blocks = grid_for(pl.t.iterations(planes), 1);
    int tile_rows = static_cast<int>(pl.tile_rows), win_rows = static_cast<int>(pl.win_rows);
    int rows = static_cast<int>(pl.rows);
    size_t smem = static_cast<size_t>(pl.smem);
    if (size == 3)
      max_pool_backward_tiled<3><<<blocks, kThreads, smem, stream>>>(dy, x, dx, planes, g, pl.t, tile_rows,
                                                                     win_rows, rows);
    else
      max_pool_backward_tiled<0><<<blocks, kThreads, smem, stream>>>(dy, x, dx, planes, g, pl.t, tile_rows,
                                                                     win_rows, rows);
  } else {
    max_pool_backward_general<<<grid_for(planes * H * W, kThreads), kThreads, 0, stream>>>(dy, x, y, dx, planes,
                                                                                           g);
  }
  PYA_CHECK_LAUNCH("max_pool_backward");
}

}  // namespace pya::cuda
