// Compares the emulated CUDA launchers of kernels/{lrn,pool,softmax,elementwise,dropout,augment}_cuda.cu (see run.sh) with the CPU
// backend.
// Outputs and workspaces start as a NaN with a payload no computation makes (kPoison), so an element a kernel
// never wrote fails the comparison. Pooling (y, dx, and the stored winner bytes) must match the CPU bit for bit,
// the backward from stored winners the recomputing one too; LRN and softmax within the
// tolerances of the GPU parity tests (tests/test_lrn.py, tests/test_softmax.py); ReLU and the SGD update bit for
// bit, with the elements just outside each array left alone (ReLU's inputs here are numbers: a GPU returns its
// canonical NaN for a NaN input, where the CPU keeps the input's bits).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "augment.h"
#include "dropout.h"
#include "elementwise.h"
#include "emu_prelude.h"
#include "lrn.h"
#include "pool.h"
#include "softmax.h"

using namespace pya;

namespace {

const uint32_t kPoisonBits = 0x7fc0beefu;
float poison() {
  float f;
  std::memcpy(&f, &kPoisonBits, 4);
  return f;
}
bool is_poison(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b == kPoisonBits;
}
std::vector<float> poisoned(size_t n) { return std::vector<float>(n, poison()); }
uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

Stream stream() { return emu_expected_stream; }
int fails = 0;

// got (the emulated GPU) against ref (the CPU): |got - ref| <= rtol |ref| + atol, NaN where ref is NaN, the same
// infinity where it is infinite,
// never the poison. Prints the worst difference and how many elements are bit-identical.
bool close(const char* what, const std::vector<float>& ref, const std::vector<float>& got, double rtol, double atol) {
  size_t bad = 0, same = 0, first_bad = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    float r = ref[i], g = got[i];
    bool ok;
    if (is_poison(g)) ok = false;
    else if (std::isnan(r)) ok = std::isnan(g);
    else if (std::isinf(r)) ok = g == r;  // the same infinity (|inf - inf| would be NaN)
    else {
      double d = std::fabs(double(g) - double(r));
      ok = d <= rtol * std::fabs(r) + atol;  // false for a NaN g
      if (std::isfinite(d)) worst = std::max(worst, d);
    }
    same += bits(r) == bits(g);
    if (!ok && bad++ == 0) first_bad = i;
  }
  std::printf("   %-4s max diff %.2e, %zu/%zu bit-identical%s", what, worst, same, ref.size(), bad ? " FAIL" : "");
  if (bad) std::printf(" (%zu bad, first at %zu: cpu %g gpu %g)", bad, first_bad, ref[first_bad], got[first_bad]);
  std::printf("\n");
  fails += bad != 0;
  return bad == 0;
}

bool identical(const char* what, const std::vector<float>& ref, const std::vector<float>& got) {
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (bits(ref[i]) != bits(got[i]) && bad++ == 0) first_bad = i;
  std::printf("   %-4s %s", what, bad ? "FAIL" : "bit-identical");
  if (bad) std::printf(" (%zu differ, first at %zu: cpu %g gpu %g%s)", bad, first_bad, ref[first_bad], got[first_bad],
                       is_poison(got[first_bad]) ? ", never written" : "");
  std::printf("\n");
  fails += bad != 0;
  return bad == 0;
}

// Winner bytes: the GPU's must equal the CPU's. They start as kPoisonByte, which no window of fewer than 256
// taps can hold; with 256 taps (size 16) an unwritten byte can pass here, but its y (poisoned too) cannot.
const uint8_t kPoisonByte = 0xff;
bool identical_bytes(const char* what, const std::vector<uint8_t>& ref, const std::vector<uint8_t>& got) {
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (ref[i] != got[i] && bad++ == 0) first_bad = i;
  std::printf("   %-4s %s", what, bad ? "FAIL" : "identical");
  if (bad) std::printf(" (%zu differ, first at %zu: cpu %d gpu %d)", bad, first_bad, ref[first_bad], got[first_bad]);
  std::printf("\n");
  fails += bad != 0;
  return bad == 0;
}

// For runs of a few blocks only (emu_run_block): every element the blocks wrote must match the CPU within the
// tolerance, the others must still hold the poison; `must` lists elements that must have been written (the
// largest offsets).
bool written_match(const char* what, const std::vector<float>& ref, const std::vector<float>& got, double rtol,
                   double atol, std::initializer_list<int64_t> must) {
  int64_t written = 0, bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (is_poison(got[i])) continue;
    ++written;
    double d = std::fabs(double(got[i]) - double(ref[i]));
    if (!(d <= rtol * std::fabs(ref[i]) + atol) && !(std::isnan(ref[i]) && std::isnan(got[i]))) ++bad;
  }
  for (int64_t i : must) bad += is_poison(got[i]);
  std::printf("   %-4s %lld elements written by the blocks run%s\n", what, (long long)written, bad ? " FAIL" : ", all match");
  fails += bad != 0;
  return bad == 0;
}

// The same for winner bytes, where the blocks run wrote y (each y and its byte are written together).
bool written_bytes_match(const char* what, const std::vector<uint8_t>& ref, const std::vector<uint8_t>& got,
                         const std::vector<float>& y_got) {
  int64_t written = 0, bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (is_poison(y_got[i])) continue;
    ++written;
    bad += ref[i] != got[i];
  }
  std::printf("   %-4s %lld bytes beside the y written%s\n", what, (long long)written, bad ? " FAIL" : ", all match");
  fails += bad != 0;
  return bad == 0;
}

bool first_and_last_y(dim3 b, dim3 g) { return b.y == 0 || b.y + 1 == g.y; }
bool first_and_last_two_x(dim3 b, dim3 g) { return b.x < 2 || b.x + 2 >= g.x; }

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float f : v)
    if (std::isfinite(f)) m = std::max(m, std::fabs(f));
  return m;
}

std::mt19937 gen(12345);
std::vector<float> normal(size_t n, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = nd(gen);
  return v;
}

// ---- LRN --------------------------------------------------------------------------------------------------------

struct LrnCase {
  int64_t N;
  int C;
  int64_t H, W;
  int size;
  float alpha, beta, k, scale;
  bool relu;
};

void check_lrn(const LrnCase& c) {
  const int64_t HW = c.H * c.W, n = c.N * c.C * HW;
  std::printf("lrn N=%lld C=%d %lldx%lld size %d alpha %g beta %g k %g\n", (long long)c.N, c.C, (long long)c.H,
              (long long)c.W, c.size, c.alpha, c.beta, c.k);
  std::vector<float> x = normal(n, c.scale), dy = normal(n, 1.f);
  if (c.relu)
    for (auto& e : x) e = std::max(e, 0.f);
  std::vector<float> y_cpu = poisoned(n), y_gpu = poisoned(n);
  cpu::lrn_forward(x.data(), y_cpu.data(), c.N, c.C, HW, c.size, c.alpha, c.beta, c.k, nullptr);
  cuda::lrn_forward(x.data(), y_gpu.data(), c.N, c.C, HW, c.size, c.alpha, c.beta, c.k, stream());
  close("y", y_cpu, y_gpu, 2e-6, 1e-7);

  // Workspaces of exactly the size lrn_workspace_floats asks for (ASan sees an overrun). Where the GPU needs
  // none it gets a null workspace and a poisoned y: that path must read neither.
  std::vector<float> ws_cpu = poisoned(cpu::lrn_workspace_floats(c.N, c.C, HW, c.size)), dx_cpu = poisoned(n);
  cpu::lrn_backward(dy.data(), x.data(), y_cpu.data(), dx_cpu.data(), ws_cpu.data(), c.N, c.C, HW, c.size, c.alpha,
                    c.beta, c.k, nullptr);
  const int64_t need = cuda::lrn_workspace_floats(c.N, c.C, HW, c.size);
  std::vector<float> ws_gpu = poisoned(need), dx_gpu = poisoned(n), y_unread = poisoned(n);
  cuda::lrn_backward(dy.data(), x.data(), need ? y_gpu.data() : y_unread.data(), dx_gpu.data(),
                     need ? ws_gpu.data() : nullptr, c.N, c.C, HW, c.size, c.alpha, c.beta, c.k, stream());
  std::printf("   (%s path)\n", need ? "per-pixel, y and workspace" : "chunked, without y or workspace");
  close("dx", dx_cpu, dx_gpu, 1e-5, 2e-6 * max_abs(dx_cpu));
}

void lrn_checks() {
  const float a = 1e-4f, b = 0.75f, k = 2.f;
  const LrnCase cases[] = {
      {2, 13, 3, 5, 5, a, b, k, 20, false},   {1, 1, 2, 2, 5, a, b, k, 20, false},
      {3, 2, 7, 1, 3, 0.05f, 0.75f, 2, 1, false}, {1, 4, 1, 1, 1, 0.05f, 0.75f, 2, 1, false},
      {2, 96, 55, 55, 5, a, b, k, 30, true},  // lrn1 at batch 2
      {2, 256, 27, 27, 5, a, b, k, 30, true}, // lrn2 at batch 2
      {1, 100, 7, 5, 1, 0.05f, 1.3f, 0.5f, 3, false}, {1, 100, 7, 5, 3, 0.05f, 1.3f, 0.5f, 3, false},
      {1, 100, 7, 5, 5, 0.05f, 1.3f, 0.5f, 3, false}, {1, 100, 7, 5, 7, 0.05f, 1.3f, 0.5f, 3, false},
      {2, 40, 9, 9, 9, 0.05f, 1.3f, 0.5f, 3, false},   // the per-pixel kernels (window above 7)
      {1, 33, 17, 19, 11, 0.01f, 0.75f, 1, 3, false},
      {3, 17, 16, 16, 5, 0.05f, 0.75f, 2, 3, false},  // 256 pixels: whole tiles
      {1, 50, 15, 19, 7, 0.05f, 0.75f, 2, 3, false},  // C not a multiple of any chunk
      {2, 12, 4, 4, 5, a, b, k, 1e6, false},
  };
  for (const auto& c : cases) check_lrn(c);

  // More pixel tiles than a grid's y dimension holds (65535): block y = 0 also takes the last tile. Only the
  // first and last rows of blocks run.
  const int64_t HW = 65535LL * 256 + 200;  // 65536 tiles: block y = 0 takes tiles 0 and 65535 (partial)
  for (int size : {3, 9}) {
    std::printf("lrn N=1 C=2 1x%lld size %d (grid-stride over pixel tiles; first and last blocks)\n", (long long)HW,
                size);
    const int64_t n = 2 * HW;
    std::vector<float> x = normal(n, 3.f), dy = normal(n, 1.f), y_cpu = poisoned(n), y_gpu = poisoned(n);
    cpu::lrn_forward(x.data(), y_cpu.data(), 1, 2, HW, size, 0.05f, 0.75f, 2.f, nullptr);
    emu_run_block = size == 3 ? first_and_last_y : first_and_last_two_x;
    cuda::lrn_forward(x.data(), y_gpu.data(), 1, 2, HW, size, 0.05f, 0.75f, 2.f, stream());
    written_match("y", y_cpu, y_gpu, 2e-6, 1e-7, {0, HW - 1, n - 1});
    std::vector<float> ws = poisoned(n), dx_cpu = poisoned(n), dx_gpu = poisoned(n);
    emu_run_block = nullptr;
    cpu::lrn_backward(dy.data(), x.data(), y_cpu.data(), dx_cpu.data(), ws.data(), 1, 2, HW, size, 0.05f, 0.75f, 2.f,
                      nullptr);
    std::fill(ws.begin(), ws.end(), poison());
    const bool chunked = cuda::lrn_workspace_floats(1, 2, HW, size) == 0;
    emu_run_block = size == 3 ? first_and_last_y : first_and_last_two_x;
    cuda::lrn_backward(dy.data(), x.data(), chunked ? y_gpu.data() : y_cpu.data(), dx_gpu.data(),
                       chunked ? nullptr : ws.data(), 1, 2, HW, size, 0.05f, 0.75f, 2.f, stream());
    emu_run_block = nullptr;
    written_match("dx", dx_cpu, dx_gpu, 1e-5, 2e-6 * max_abs(dx_cpu), {0, HW - 1, n - 1});
  }
}

// ---- max-pooling ------------------------------------------------------------------------------------------------

struct PoolCase {
  int64_t planes, H, W;
  int size, stride;
};

// Values on a coarse grid (many ties: the first maximal element must win) and a few NaNs (they win, the first
// of them, and propagate).
std::vector<float> pool_input(size_t n) {
  std::uniform_int_distribution<int> v(-6, 6), nan(0, 499);
  std::vector<float> x(n);
  for (auto& e : x) e = nan(gen) == 0 ? std::numeric_limits<float>::quiet_NaN() : 0.5f * float(v(gen));
  return x;
}

void check_pool(const PoolCase& c) {
  PoolGeometry g = pool_geometry(c.H, c.W, c.size, c.stride);
  std::printf("pool planes=%lld %lldx%lld size %d stride %d -> %lldx%lld\n", (long long)c.planes, (long long)c.H,
              (long long)c.W, c.size, c.stride, (long long)g.OH, (long long)g.OW);
  const int64_t nin = c.planes * c.H * c.W, nout = c.planes * g.OH * g.OW;
  std::vector<float> x = pool_input(nin), dy = normal(nout, 1.f);
  // Some -0.f gradients: a sum starting from +0.f (and the GPU's gather from stored winners, which adds +0.f
  // for windows it masks) must give +0.f where the CPU's scatter does.
  for (int64_t i = 0; i < nout; i += 7) dy[i] = -0.f;
  std::vector<float> y_cpu = poisoned(nout), y_gpu = poisoned(nout);
  cpu::max_pool_forward(x.data(), y_cpu.data(), c.planes, c.H, c.W, c.size, c.stride, nullptr);
  cuda::max_pool_forward(x.data(), y_gpu.data(), c.planes, c.H, c.W, c.size, c.stride, stream());
  identical("y", y_cpu, y_gpu);
  std::vector<float> dx_cpu = poisoned(nin), dx_gpu = poisoned(nin);
  cpu::max_pool_backward(dy.data(), x.data(), y_cpu.data(), dx_cpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                         nullptr);
  cuda::max_pool_backward(dy.data(), x.data(), y_cpu.data(), dx_gpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                          stream());
  identical("dx", dx_cpu, dx_gpu);

  // With stored winners: the same y, the same bytes on both backends, and from them the recompute's dx.
  std::vector<float> yi_cpu = poisoned(nout), yi_gpu = poisoned(nout);
  std::vector<uint8_t> win_cpu(nout, kPoisonByte), win_gpu(nout, kPoisonByte);
  cpu::max_pool_forward_with_indices(x.data(), yi_cpu.data(), win_cpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                     nullptr);
  cuda::max_pool_forward_with_indices(x.data(), yi_gpu.data(), win_gpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                      stream());
  std::printf("  with indices (cpu: the CPU's against its plain path)\n");
  identical("cpu y", y_cpu, yi_cpu);
  identical("y", y_cpu, yi_gpu);
  identical_bytes("win", win_cpu, win_gpu);
  std::vector<float> dxi_cpu(nin), dxi_gpu(nin);
  // Both backwards from the bytes `win`, into poisoned outputs.
  auto from_indices = [&](const std::vector<uint8_t>& win) {
    std::fill(dxi_cpu.begin(), dxi_cpu.end(), poison());
    std::fill(dxi_gpu.begin(), dxi_gpu.end(), poison());
    cpu::max_pool_backward_from_indices(dy.data(), win.data(), dxi_cpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                        nullptr);
    cuda::max_pool_backward_from_indices(dy.data(), win.data(), dxi_gpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                         stream());
  };
  from_indices(win_cpu);
  identical("cpu dx", dx_cpu, dxi_cpu);
  identical("dx", dx_cpu, dxi_gpu);

  // Bytes that are no tap of their window (>= size * size) route nowhere: both backends agree, and read
  // nothing out of bounds (ASan).
  std::vector<uint8_t> junk = win_cpu;
  std::uniform_int_distribution<int> byte(c.size * c.size, 255), pick(0, 3);
  if (c.size * c.size <= 255)
    for (auto& b : junk)
      if (pick(gen) == 0) b = uint8_t(byte(gen));
  from_indices(junk);
  std::printf("  from indices with out-of-window bytes\n");
  identical("dx", dxi_cpu, dxi_gpu);
}

void pool_checks() {
  const PoolCase cases[] = {
      {1, 3, 3, 3, 2},      {5, 7, 7, 3, 2},       {7, 13, 13, 3, 2},    {3, 10, 11, 2, 2},
      {4, 9, 9, 3, 1},      {2, 17, 23, 5, 3},     {1, 9, 9, 1, 1},      {2, 6, 6, 4, 4},
      {192, 55, 55, 3, 2},  // pool1 at batch 2
      {512, 27, 27, 3, 2},  // pool2 at batch 2
      {512, 13, 13, 3, 2},  // pool5 at batch 2
      {4096, 13, 13, 3, 2}, // pool5 at batch 16: several planes per block
      {1000, 5, 5, 3, 2},   {1, 1200, 33, 3, 2},  // one tall plane: bands
      {3, 40, 2000, 3, 2},  // wide planes: thin bands
      {1, 7, 5000, 3, 2},   // too wide for a tile: the general kernels
      {2, 30, 1500, 3, 2},  {1, 64, 64, 7, 3},
      {2, 40, 37, 16, 16},  {1, 20, 21, 16, 3},  // the largest windows with stored winners: 256 taps
      {3, 6, 9, 6, 6},      {2, 11, 40, 2, 1},
  };
  for (const auto& c : cases) check_pool(c);

  // Grids of 2 blocks, so each block loops over several iterations (tiles of whole planes, bands, inputs from
  // stored winners): what planes counts past the grid's 2^20 blocks do on a GPU. Each iteration rewrites the
  // tile and its tables, after the barrier that ends the previous one.
  emu_grid_for_cap = 2;
  const PoolCase looping[] = {{40, 9, 9, 3, 2}, {3, 60, 31, 3, 2}, {5, 13, 13, 2, 1}};
  for (const auto& c : looping) {
    std::printf("(grid of 2 blocks) ");
    check_pool(c);
  }
  emu_grid_for_cap = 65535LL * 16;

  // AlexNet's three poolings at batch 128 (the planner packs planes by the batch size): the first two and last
  // two blocks of each launch, so the largest offsets are among those checked.
  const PoolCase alexnet[] = {{128 * 96, 55, 55, 3, 2}, {128 * 256, 27, 27, 3, 2}, {128 * 256, 13, 13, 3, 2}};
  for (const auto& c : alexnet) {
    PoolGeometry g = pool_geometry(c.H, c.W, c.size, c.stride);
    std::printf("pool planes=%lld %lldx%lld at batch 128 (first and last blocks)\n", (long long)c.planes,
                (long long)c.H, (long long)c.W);
    const int64_t nin = c.planes * c.H * c.W, nout = c.planes * g.OH * g.OW;
    std::vector<float> x = pool_input(nin), dy = normal(nout, 1.f);
    std::vector<float> y_cpu = poisoned(nout), y_gpu = poisoned(nout), dx_cpu = poisoned(nin), dx_gpu = poisoned(nin);
    cpu::max_pool_forward(x.data(), y_cpu.data(), c.planes, c.H, c.W, c.size, c.stride, nullptr);
    cpu::max_pool_backward(dy.data(), x.data(), y_cpu.data(), dx_cpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                           nullptr);
    std::vector<float> yi_cpu = poisoned(nout), yi_gpu = poisoned(nout), dxi_gpu = poisoned(nin);
    std::vector<uint8_t> win_cpu(nout, kPoisonByte), win_gpu(nout, kPoisonByte);
    cpu::max_pool_forward_with_indices(x.data(), yi_cpu.data(), win_cpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                       nullptr);
    emu_run_block = first_and_last_two_x;
    cuda::max_pool_forward(x.data(), y_gpu.data(), c.planes, c.H, c.W, c.size, c.stride, stream());
    cuda::max_pool_backward(dy.data(), x.data(), y_cpu.data(), dx_gpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                            stream());
    cuda::max_pool_forward_with_indices(x.data(), yi_gpu.data(), win_gpu.data(), c.planes, c.H, c.W, c.size, c.stride,
                                        stream());
    cuda::max_pool_backward_from_indices(dy.data(), win_cpu.data(), dxi_gpu.data(), c.planes, c.H, c.W, c.size,
                                         c.stride, stream());
    emu_run_block = nullptr;
    written_match("y", y_cpu, y_gpu, 0, 0, {0, nout - 1});
    written_match("dx", dx_cpu, dx_gpu, 0, 0, {0, nin - 1});
    std::printf("  with indices (cpu: the CPU's against its plain path)\n");
    identical("cpu y", y_cpu, yi_cpu);
    written_match("y", y_cpu, yi_gpu, 0, 0, {0, nout - 1});
    written_bytes_match("win", win_cpu, win_gpu, yi_gpu);
    written_match("dx", dx_cpu, dxi_gpu, 0, 0, {0, nin - 1});
  }
}

// ---- softmax ----------------------------------------------------------------------------------------------------

// n floats, 16-byte aligned or (misaligned) 4 bytes past that, poisoned; exactly n after data(), so ASan sees an
// overrun. The CUDA launchers read and write rows as float4 only when both their pointers are aligned (and
// K % 4 == 0); a float4 access at a misaligned address fails UBSan's alignment check.
class FloatBuffer {
 public:
  FloatBuffer(int64_t n, bool misaligned) : n_(n), off_(misaligned ? 1 : 0) {
    base_ = static_cast<float*>(::operator new[](sizeof(float) * size_t(n + off_), std::align_val_t(16)));
    std::fill(base_, base_ + n + off_, poison());
  }
  FloatBuffer(int64_t n, bool misaligned, const std::vector<float>& v) : FloatBuffer(n, misaligned) {
    std::copy(v.begin(), v.end(), data());
  }
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  ~FloatBuffer() { ::operator delete[](base_, std::align_val_t(16)); }
  float* data() { return base_ + off_; }
  std::vector<float> values() const { return std::vector<float>(base_ + off_, base_ + off_ + n_); }

 private:
  float* base_;
  int64_t n_, off_;
};

// One counter for every softmax_cross_entropy call, as the Python layer keeps one per stream: each call must
// leave it at 0, bad labels or not, so each call checks the previous one too.
uint32_t softmax_counter = 0;

struct SoftmaxCase {
  int64_t N, K;
  float scale = 3;
  bool bad_labels = false;     // labels -1 (row 0) and K (row N / 2)
  bool misaligned_in = false;  // x one float past 16-byte alignment
  bool misaligned_out = false; // p and dlogits one float past it
  bool backwards = false;      // blocks run from the last to the first: block 0 draws the last ticket
  bool infinities = false;     // row 0: one -inf; row 1: all -inf (a NaN row); row 2: one +inf (a NaN row)
};

// The stats softmax.h's fixed order (softmax_cpu.cpp's) gives from these row losses.
template <class Label>
void fixed_order_stats(const std::vector<float>& row_loss, const std::vector<Label>& labels, double* stats) {
  LossLane part[kLossLanes];
  for (int l = 0; l < kLossLanes; ++l)
    part[l] = cross_entropy_lane(row_loss.data(), labels.data(), int64_t(labels.size()), l);
  for (int half = kLossLanes / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; ++i) cross_entropy_combine(part[i], part[i + half]);
  cross_entropy_stats(part[0], stats);
}

void expect_launches(const char* what, long before, long expected) {
  if (emu_launches - before == expected) return;
  std::printf("   %s made %ld launches, expected %ld FAIL\n", what, emu_launches - before, expected);
  ++fails;
}

template <class Label> void check_softmax(const SoftmaxCase& c) {
  const int64_t N = c.N, K = c.K;
  std::printf("softmax %lldx%lld %s scale %g%s%s%s%s%s\n", (long long)N, (long long)K,
              sizeof(Label) == 4 ? "int32" : "int64", c.scale, c.bad_labels ? ", out-of-range labels" : "",
              c.misaligned_in ? ", x misaligned" : "", c.misaligned_out ? ", outputs misaligned" : "",
              c.backwards ? ", blocks backwards" : "", c.infinities ? ", infinite logits" : "");
  std::vector<float> xv = normal(N * K, c.scale);
  if (c.infinities) {  // the register rows' -inf padding must still add exactly 0 to every row's sum
    xv[1 % K] = -INFINITY;
    for (int64_t j = 0; j < K; ++j) xv[K + j] = -INFINITY;
    xv[2 * K + K / 2] = INFINITY;
  }
  FloatBuffer x(N * K, c.misaligned_in, xv);
  std::vector<Label> labels(N);
  std::uniform_int_distribution<int64_t> lab(0, K - 1);
  for (auto& l : labels) l = Label(lab(gen));
  if (c.bad_labels) {
    labels[N / 2] = Label(K);
    labels[0] = Label(-1);
  }
  emu_blocks_backwards = c.backwards;

  std::vector<float> p_cpu = poisoned(N * K);
  FloatBuffer p_gpu(N * K, c.misaligned_out);
  cpu::softmax_forward(xv.data(), p_cpu.data(), N, K, nullptr);
  long before = emu_launches;
  cuda::softmax_forward(x.data(), p_gpu.data(), N, K, stream());
  expect_launches("softmax_forward", before, 1);
  close("p", p_cpu, p_gpu.values(), 1e-5, 1e-9);

  std::vector<float> loss_cpu = poisoned(N), loss_gpu = poisoned(N), dx_cpu = poisoned(N * K);
  FloatBuffer dx_gpu(N * K, c.misaligned_out);
  double stats_cpu[3], stats_gpu[3] = {NAN, NAN, NAN}, stats_ref[3];
  cpu::softmax_cross_entropy(xv.data(), labels.data(), loss_cpu.data(), dx_cpu.data(), stats_cpu, &softmax_counter,
                             N, K, nullptr);
  before = emu_launches;
  cuda::softmax_cross_entropy(x.data(), labels.data(), loss_gpu.data(), dx_gpu.data(), stats_gpu, &softmax_counter, N,
                              K, stream());
  emu_blocks_backwards = false;
  expect_launches("softmax_cross_entropy", before, 1);
  if (softmax_counter != 0) {
    std::printf("   counter left at %u, expected 0 FAIL\n", softmax_counter);
    ++fails;
    softmax_counter = 0;
  }
  close("loss", loss_cpu, loss_gpu, 1e-5, 1e-6);
  close("dx", dx_cpu, dx_gpu.values(), 1e-5, 1e-9);
  // The last block adds the same terms in the same order as the CPU: from the GPU's row losses, the CPU's order
  // must give the GPU's stats bit for bit (and the CPU's own stats must be close).
  fixed_order_stats(loss_gpu, labels, stats_ref);
  bool same = std::memcmp(stats_ref, stats_gpu, sizeof stats_ref) == 0;
  bool near = c.bad_labels || c.infinities ? std::isnan(stats_cpu[0]) && std::isnan(stats_gpu[0])
                           : std::fabs(stats_cpu[0] - stats_gpu[0]) <= 1e-5 * std::max(1.0, std::fabs(stats_cpu[0]));
  bool range = stats_cpu[1] == stats_gpu[1] && stats_cpu[2] == stats_gpu[2];
  std::printf("   stats loss sum %.9g (cpu %.9g), labels [%g, %g]%s\n", stats_gpu[0], stats_cpu[0], stats_gpu[1],
              stats_gpu[2], same && near && range ? "" : " FAIL");
  fails += !(same && near && range);
}

void softmax_checks() {
  // The row layouts: float4 register rows (K % 4 == 0, aligned) up to 128, 256, 512, 1024; float register rows up
  // to 32, 64, 128, 256, 512, 1024; wider rows in three passes. Each width just below and above a step.
  for (int64_t K : {4, 8, 124, 128, 132, 252, 256, 260, 508, 512, 516, 1000, 1020, 1024, 1028, 2048})
    check_softmax<int32_t>({3, K});
  for (int64_t K : {1, 2, 3, 10, 31, 32, 33, 63, 64, 65, 127, 129, 255, 257, 511, 513, 999, 1023, 1025, 3001})
    check_softmax<int64_t>({3, K});
  // AlexNet's batch, both label types, the float path when a pointer is misaligned, bad labels (the counter must
  // still come back to 0, and the next call be right), and blocks in the other order.
  check_softmax<int32_t>({128, 1000, 10});
  check_softmax<int64_t>({128, 1000, 10, true});
  check_softmax<int32_t>({128, 1000, 10, false, true, false});
  check_softmax<int64_t>({128, 1000, 10, false, false, true});
  check_softmax<int32_t>({128, 1000, 10, false, false, false, true});
  check_softmax<int64_t>({1, 1, 3});
  check_softmax<int32_t>({1, 1000, 3});
  check_softmax<int32_t>({1, 5000, 3, true, false, false, true});
  check_softmax<int64_t>({5, 33, 3});
  check_softmax<int32_t>({300, 37, 3, true});
  check_softmax<int64_t>({2, 1025, 1e30f});
  check_softmax<int32_t>({9, 257, 1e4f});
  check_softmax<int64_t>({300, 1024, 3});  // the widest row in registers; more rows than the sum's lanes
  check_softmax<int32_t>({7, 1, 3, true});
  // Infinite logits at widths with padding in every register-row layout (float4 and float) and none.
  for (int64_t K : {2, 33, 250, 1000, 1001, 1024})
    check_softmax<int64_t>({4, K, 3, false, false, false, false, true});
  check_softmax<int64_t>({33, 65, 3});
}

// More rows than the grid has blocks (4096): blocks loop over rows. Running all 4096 blocks takes minutes here, so
// only the first and last two run (block 1 takes the last row). With the counter at 0, none of them draws the
// last ticket: the stats stay unwritten and the counter holds 4 (on the GPU every block runs, so it never stays
// so). With the counter at 4092, the tickets the other blocks would have drawn, and their rows' losses in place
// (the CPU's), the fourth block to run is the last and sums every row.
void check_softmax_grid_stride() {
  const int64_t N = 2 * 4096 + 2, K = 5;
  std::printf("softmax %lldx%lld (blocks loop over rows; the first and last two of 4096 run)\n", (long long)N,
              (long long)K);
  const std::vector<float> x = normal(N * K, 3.f);
  std::vector<int32_t> labels(N);
  for (int64_t i = 0; i < N; ++i) labels[i] = int32_t(i % K);
  std::vector<float> loss_cpu = poisoned(N), dx_cpu = poisoned(N * K), p_cpu = poisoned(N * K);
  double stats_cpu[3];
  cpu::softmax_forward(x.data(), p_cpu.data(), N, K, nullptr);
  cpu::softmax_cross_entropy(x.data(), labels.data(), loss_cpu.data(), dx_cpu.data(), stats_cpu, &softmax_counter, N,
                             K, nullptr);
  emu_run_block = first_and_last_two_x;
  std::vector<float> p_gpu = poisoned(N * K);
  cuda::softmax_forward(x.data(), p_gpu.data(), N, K, stream());
  written_match("p", p_cpu, p_gpu, 1e-5, 1e-9, {0, N * K - 1});

  std::vector<float> loss_gpu = poisoned(N), dx_gpu = poisoned(N * K);
  double stats_gpu[3] = {NAN, NAN, NAN};
  cuda::softmax_cross_entropy(x.data(), labels.data(), loss_gpu.data(), dx_gpu.data(), stats_gpu, &softmax_counter, N,
                              K, stream());
  const bool unwritten = std::isnan(stats_gpu[0]) && std::isnan(stats_gpu[1]) && std::isnan(stats_gpu[2]);
  std::printf("   counter at 0: %u after, stats %s%s\n", softmax_counter, unwritten ? "unwritten" : "written",
              softmax_counter == 4 && unwritten ? "" : " FAIL");
  fails += !(softmax_counter == 4 && unwritten);

  for (bool backwards : {false, true}) {
    softmax_counter = 4096 - 4;
    emu_blocks_backwards = backwards;
    loss_gpu = loss_cpu;
    dx_gpu = poisoned(N * K);
    cuda::softmax_cross_entropy(x.data(), labels.data(), loss_gpu.data(), dx_gpu.data(), stats_gpu, &softmax_counter,
                                N, K, stream());
    emu_blocks_backwards = false;
    double stats_ref[3];
    fixed_order_stats(loss_gpu, labels, stats_ref);
    const bool ok = softmax_counter == 0 && std::memcmp(stats_ref, stats_gpu, sizeof stats_ref) == 0 &&
                    std::fabs(stats_cpu[0] - stats_gpu[0]) <= 1e-5 * std::fabs(stats_cpu[0]) &&
                    stats_gpu[1] == 0 && stats_gpu[2] == double(K - 1);
    std::printf("   counter at 4092%s: %u after, stats loss sum %.9g (cpu %.9g), labels [%g, %g]%s\n",
                backwards ? ", blocks backwards" : "", softmax_counter, stats_gpu[0], stats_cpu[0], stats_gpu[1],
                stats_gpu[2], ok ? "" : " FAIL");
    fails += !ok;
    close("loss", loss_cpu, loss_gpu, 1e-5, 1e-6);
    written_match("dx", dx_cpu, dx_gpu, 1e-5, 1e-9, {0, N * K - 1});
  }
  emu_run_block = nullptr;
  softmax_counter = 0;
}

// ---- launch configurations at AlexNet's shapes, batch 128, and at extreme ones ------------------------------

// Each array sits in a buffer with guard floats before and after it; `offset` 4 keeps it 16-byte aligned (the
// float4 path), 1 makes it misaligned (the scalar path).
struct Guarded {
  std::vector<float> buf;
  int offset;
  int64_t n;
  Guarded(int64_t n_, int offset_, std::mt19937& gen, float scale) : buf(n_ + 8), offset(offset_), n(n_) {
    std::normal_distribution<float> normal(0.f, scale);
    for (float& x : buf) x = normal(gen);
  }
  float* data() { return buf.data() + offset; }
};

bool same_buffers(const char* what, const std::vector<Guarded>& ref, const std::vector<Guarded>& got) {
  size_t bad = 0;
  for (size_t t = 0; t < ref.size(); ++t)
    for (size_t i = 0; i < ref[t].buf.size(); ++i) bad += bits(ref[t].buf[i]) != bits(got[t].buf[i]);
  std::printf("   %-4s %s\n", what, bad ? "FAIL" : "bit-identical, guards untouched");
  fails += bad != 0;
  return bad == 0;
}

void sgd_case(const std::vector<int64_t>& sizes, bool misalign_some) {
  std::mt19937 gen(unsigned(sizes.size() * 7919 + sizes[0]));
  std::vector<Guarded> w, dw, v;
  int nonempty = 0;
  for (size_t t = 0; t < sizes.size(); ++t) {
    const int off = misalign_some && t % 3 == 1 ? 1 : 4;
    w.emplace_back(sizes[t], off, gen, 1.f);
    dw.emplace_back(sizes[t], t % 5 == 2 ? 1 : off, gen, 1.f);  // dw misaligned alone: the scalar path too
    v.emplace_back(sizes[t], off, gen, 0.1f);
    nonempty += sizes[t] > 0;
  }
  std::vector<Guarded> w_gpu = w, v_gpu = v;
  std::vector<SgdTensor> cpu_t, gpu_t;
  for (size_t t = 0; t < sizes.size(); ++t) {
    cpu_t.push_back({w[t].data(), dw[t].data(), v[t].data(), sizes[t]});
    gpu_t.push_back({w_gpu[t].data(), dw[t].data(), v_gpu[t].data(), sizes[t]});
  }
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  std::printf("sgd_update %zu tensors, %lld elements%s\n", sizes.size(), (long long)total,
              misalign_some ? ", some misaligned" : "");
  cpu::sgd_update(cpu_t.data(), int(cpu_t.size()), 0.01f, 0.9f, 5e-4f, nullptr);
  const long launches = emu_launches;
  cuda::sgd_update(gpu_t.data(), int(gpu_t.size()), 0.01f, 0.9f, 5e-4f, stream());
  const long want = (nonempty + 31) / 32;  // 32 tensors a launch, none for empty ones
  if (emu_launches - launches != want) {
    std::printf("   %ld launches, expected %ld FAIL\n", emu_launches - launches, want);
    ++fails;
  }
  same_buffers("w", w, w_gpu);
  same_buffers("v", v, v_gpu);
}

void elementwise_checks() {
  sgd_case({5, 0, 1, 4095, 4096, 4097, 3, 10000}, true);  // around a block's 4096 elements
  sgd_case({4096 * 3 + 2}, false);
  std::vector<int64_t> many;
  for (int i = 0; i < 70; ++i) many.push_back(i * 37 % 101);  // three launches, empty tensors among them
  sgd_case(many, true);
  sgd_case({0, 0}, false);
  // Offsets (in floats) of each array: all aligned, all misaligned, and ONE of them misaligned (the input, the
  // other input, the output): the float4 path needs every pointer 16-byte aligned, and a launcher that tested
  // only some of them would make a misaligned float4 access (UBSan here; "misaligned address" on a GPU).
  const int offsets[][3] = {{4, 4, 4}, {1, 1, 1}, {1, 4, 4}, {4, 1, 4}, {4, 4, 1}};
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(4096 * 4 + 3), int64_t(70001)}) {
    for (const auto& o : offsets) {
      if (n != 4096 * 4 + 3 && (o[0] != o[1] || o[1] != o[2])) continue;  // the mixed offsets on one size
      std::printf("relu %lld elements, offsets %d %d %d\n", (long long)n, o[0], o[1], o[2]);
      std::mt19937 gen(unsigned(n + o[0] + 2 * o[1] + 3 * o[2]));
      // forward: x at o[0], y at o[2]; backward: dy at o[0], y at o[1], dx at o[2]
      std::vector<Guarded> x{Guarded(n, o[0], gen, 1.f)}, dy{Guarded(n, o[0], gen, 1.f)};
      std::vector<Guarded> y_cpu{Guarded(n, o[2], gen, 1.f)}, dx_cpu{Guarded(n, o[2], gen, 1.f)};
      std::vector<Guarded> yin{Guarded(n, o[1], gen, 1.f)};
      std::vector<Guarded> y_gpu = y_cpu, dx_gpu = dx_cpu;
      cpu::relu_forward(x[0].data(), y_cpu[0].data(), n, nullptr);
      cuda::relu_forward(x[0].data(), y_gpu[0].data(), n, stream());
      same_buffers("y", y_cpu, y_gpu);
      cpu::relu_forward(y_cpu[0].data(), yin[0].data(), n, nullptr);  // a ReLU output (zeros included) at o[1]
      cpu::relu_backward(dy[0].data(), yin[0].data(), dx_cpu[0].data(), n, nullptr);
      cuda::relu_backward(dy[0].data(), yin[0].data(), dx_gpu[0].data(), n, stream());
      same_buffers("dx", dx_cpu, dx_gpu);
    }
  }
}

// ---- dropout and augmentation -------------------------------------------------------------------------------------

// n bytes at `offset` past a 16-byte boundary, with guard bytes before and after.
struct GuardedBytes {
  std::vector<uint8_t> buf;
  int offset;
  GuardedBytes(int64_t n, int offset_) : buf(size_t(n) + 32, 0xab), offset(offset_) {}
  uint8_t* data() { return buf.data() + offset; }
};

// Dropout against the CPU's: the same mask bytes and y bit for bit (element i keeps iff Philox word i of the seed
// passes the threshold), the backward's dx too, guards untouched. Offsets in bytes: x, y (floats, 16 aligned) and
// the mask (4 aligned) each aligned or not, as the vector path needs all three.
void dropout_checks() {
  const int offsets[][3] = {{0, 0, 0}, {4, 4, 1}, {4, 0, 0}, {0, 4, 0}, {0, 0, 1}, {0, 0, 2}};
  for (int64_t n : {int64_t(1), int64_t(6), int64_t(4096 * 4 + 3)})
    for (float p : {0.5f, 0.1f})
      for (const auto& o : offsets) {
        const bool mixed = o[0] != o[1] || (o[2] != 0) != (o[0] != 0);
        if (mixed && (n < 4096 || p != 0.5f)) continue;  // one size and p for the mixed offsets
        const uint32_t threshold = uint32_t(double(p) * 4294967296.0);
        const float scale = 1.f / (1.f - p);
        const uint64_t seed = 0x1234567800000000ull + uint64_t(n) * 3 + uint64_t(p * 10);
        std::printf("dropout %lld elements p %g, byte offsets x %d y %d mask %d\n", (long long)n, p, o[0], o[1], o[2]);
        std::mt19937 g2(unsigned(n) + unsigned(o[0] + 3 * o[1] + 7 * o[2]));
        std::vector<Guarded> x{Guarded(n, o[0] ? 1 : 4, g2, 1.f)}, dy{Guarded(n, o[0] ? 1 : 4, g2, 1.f)};
        std::vector<Guarded> y_cpu{Guarded(n, o[1] ? 1 : 4, g2, 1.f)}, dx_cpu{Guarded(n, o[1] ? 1 : 4, g2, 1.f)};
        std::vector<Guarded> y_gpu = y_cpu, dx_gpu = dx_cpu;
        GuardedBytes m_cpu(n, 16 + o[2]), m_gpu(n, 16 + o[2]);
        cpu::dropout_forward(x[0].data(), y_cpu[0].data(), m_cpu.data(), n, seed, threshold, scale, nullptr);
        cuda::dropout_forward(x[0].data(), y_gpu[0].data(), m_gpu.data(), n, seed, threshold, scale, stream());
        same_buffers("y", y_cpu, y_gpu);
        const bool same_mask = m_cpu.buf == m_gpu.buf;
        int64_t kept = 0;
        for (int64_t i = 0; i < n; ++i) kept += m_cpu.data()[i];
        std::printf("   mask %s (%lld of %lld kept)\n", same_mask ? "identical, guards untouched" : "FAIL", (long long)kept,
                    (long long)n);
        fails += !same_mask;
        cpu::dropout_backward(dy[0].data(), m_cpu.data(), dx_cpu[0].data(), n, scale, nullptr);
        cuda::dropout_backward(dy[0].data(), m_cpu.data(), dx_gpu[0].data(), n, scale, stream());
        same_buffers("dx", dx_cpu, dx_gpu);
      }
}

// The augmentation kernel against the CPU's, bit for bit: crops at different offsets, flipped and not, images
// picked out of order, three channels of lighting.
void augment_checks() {
  for (int64_t crop : {int64_t(1), int64_t(5), int64_t(31)}) {
    const int64_t num = 4, H = crop + 4, W = crop + 9, n = 3;
    std::printf("augment %lld images of %lldx%lld to %lld crops of %lld\n", (long long)num, (long long)H, (long long)W,
                (long long)n, (long long)crop);
    std::vector<uint8_t> images(size_t(num * H * W * 3));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : images) b = uint8_t(byte(gen));
    const std::vector<float> mean = normal(size_t(H * W * 3), 50.f), lighting = normal(3 * n, 5.f);
    const std::vector<int64_t> index = {2, 0, 3};
    const std::vector<int32_t> offsets = {4, 9, 0, 0, int32_t(H - crop), int32_t(W - crop - 3)};
    const std::vector<uint8_t> flips = {1, 0, 1};
    std::vector<float> out_cpu = poisoned(size_t(n * 3 * crop * crop)), out_gpu = out_cpu;
    cpu::augment(images.data(), num, H, W, mean.data(), index.data(), offsets.data(), flips.data(), lighting.data(),
                 out_cpu.data(), n, crop, nullptr);
    cuda::augment(images.data(), num, H, W, mean.data(), index.data(), offsets.data(), flips.data(), lighting.data(),
                  out_gpu.data(), n, crop, stream());
    identical("out", out_cpu, out_gpu);
  }
}

void dry_runs() {
  emu_dry_run = true;  // configurations and streams only: pointers are never touched
  float* f = reinterpret_cast<float*>(std::uintptr_t(1) << 20);
  auto lrn = [&](int64_t N, int C, int64_t HW, int size) {
    cuda::lrn_forward(f, f, N, C, HW, size, 1e-4f, 0.75f, 2.f, stream());
    cuda::lrn_backward(f, f, f, f, cuda::lrn_workspace_floats(N, C, HW, size) ? f : nullptr, N, C, HW, size, 1e-4f,
                       0.75f, 2.f, stream());
  };
  if (cuda::lrn_workspace_floats(128, 96, 55 * 55, 5) != 0 || cuda::lrn_workspace_floats(128, 256, 27 * 27, 5) != 0 ||
      cuda::lrn_workspace_floats(1, 3, int64_t(1) << 30, 5) != 3 * (int64_t(1) << 30) ||
      cuda::lrn_workspace_floats(2, 5, 7, 9) != 70) {
    std::printf("lrn_workspace_floats: unexpected sizes FAIL\n");
    ++fails;
  }
  lrn(128, 96, 55 * 55, 5);
  lrn(128, 256, 27 * 27, 5);
  lrn(1, 3, int64_t(1) << 30, 5);    // too large for 32-bit in-image offsets: the per-pixel kernels
  lrn(4096, 1, 1 << 20, 3);           // more pixel tiles than a grid dimension holds
  lrn(1, 100000, 1, 7);
  auto pool = [&](int64_t planes, int64_t H, int64_t W) {
    uint8_t* b = reinterpret_cast<uint8_t*>(f);
    cuda::max_pool_forward(f, f, planes, H, W, 3, 2, stream());
    cuda::max_pool_backward(f, f, f, f, planes, H, W, 3, 2, stream());
    cuda::max_pool_forward_with_indices(f, f, b, planes, H, W, 3, 2, stream());
    cuda::max_pool_backward_from_indices(f, b, f, planes, H, W, 3, 2, stream());
  };
  pool(128 * 96, 55, 55);
  pool(128 * 256, 27, 27);
  pool(128 * 256, 13, 13);
  pool(1, 100000, 3);
  pool(1, 3, 100000);
  pool(int64_t(1) << 28, 3, 3);
  auto softmax = [&](int64_t N, int64_t K) {
    const int32_t* l32 = reinterpret_cast<const int32_t*>(f);
    const int64_t* l64 = reinterpret_cast<const int64_t*>(f);
    cuda::softmax_forward(f, f, N, K, stream());
    double* d = reinterpret_cast<double*>(f);
    uint32_t* counter = reinterpret_cast<uint32_t*>(f);
    cuda::softmax_cross_entropy(f, l32, f, f, d, counter, N, K, stream());
    cuda::softmax_cross_entropy(f, l64, f, f, d, counter, N, K, stream());
  };
  softmax(128, 1000);
  softmax(1, 1 << 24);
  softmax(int64_t(1) << 26, 2);
  emu_dry_run = false;
  std::printf("launch configurations ok (AlexNet at batch 128, extreme shapes)\n");
}

}  // namespace

int main() {
  emu_expected_stream = reinterpret_cast<Stream>(std::uintptr_t(0x5700));  // not the default stream
  dry_runs();
  lrn_checks();
  pool_checks();
  softmax_checks();
  check_softmax_grid_stride();
  elementwise_checks();
  dropout_checks();
  augment_checks();
  std::printf(fails ? "FAILURES %d\n" : "ALL OK\n", fails);
  return fails != 0;
}
