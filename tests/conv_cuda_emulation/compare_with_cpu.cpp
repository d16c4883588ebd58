// Compares the emulated CUDA conv launchers (see run.sh), direct, Winograd and the FFT filter gradient, with the
// CPU backend and with float64 direct sums, and checks FastDiv.
#include <cstdio>
#include <algorithm>
#include <random>
#include <vector>
#include <cmath>
#include "conv.h"
#include "conv_winograd.h"
#include "conv_fft.h"
#include "emu_prelude.h"
using namespace pya;
// Largest |a - b| (a the reference); infinite where b is not finite, so an output element the kernels never
// wrote (poisoned with NaN) or one computed from unwritten workspace fails (std::max would drop a NaN).
static double maxdiff(const std::vector<float>& a, const std::vector<float>& b, double& scale) {
  double m = 0; scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(b[i])) return INFINITY;
    m = std::max(m, (double)std::fabs(a[i] - b[i])); scale = std::max(scale, (double)std::fabs(a[i]));
  }
  return m;
}
static int check_alexnet_batch128();
static int check_determinism();
static int check_fft();
static int check_grid_limits();
static int check_misaligned();
// Every result, CPU and emulated GPU, direct and Winograd, must be this close to the float64 reference,
// relative to the reference's largest magnitude (what was measured is printed at the end of the run).
constexpr double kRelTol = 1e-5;
static double maxdiff_ref(const std::vector<double>& a, const std::vector<float>& b, double& scale) {
  double m = 0; scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(b[i])) return INFINITY;
    m = std::max(m, std::fabs(a[i] - b[i])); scale = std::max(scale, std::fabs(a[i]));
  }
  return m;
}
// Direct float64 sums: y (with bias), dx, dw, db.
static void reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                      const std::vector<float>& b, const std::vector<float>& dy, std::vector<double>& y,
                      std::vector<double>& dx, std::vector<double>& dw, std::vector<double>& db) {
  y.assign(dy.size(), 0); dx.assign(x.size(), 0); dw.assign(w.size(), 0); db.assign(s.K, 0);
  const int64_t Cg = s.Cg(), Kg = s.Kg();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t yi = ((n * s.K + k) * s.P + p) * s.Q + q;
          double sum = b[k];
          const double g = dy[yi];
          db[k] += g;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < s.R; ++r)
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t h = p * s.stride - s.pad + r, ww = q * s.stride - s.pad + t;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                const int64_t xi = ((n * s.C + k / Kg * Cg + c) * s.H + h) * s.W + ww, wi = ((k * Cg + c) * s.R + r) * s.S + t;
                sum += double(w[wi]) * x[xi];
                dx[xi] += double(w[wi]) * g;
                dw[wi] += g * x[xi];
              }
          y[yi] = sum;
        }
}
int main(int argc, char** argv) {
  // "fft" as the only argument runs only the FFT filter-gradient checks (quicker, while working on them).
  if (argc == 2 && std::string(argv[1]) == "fft") {
    emu_expected_stream = reinterpret_cast<Stream>(std::uintptr_t(0x5700));
    const int fails = check_fft();
    printf(fails ? "FAILURES %d\n" : "ALL OK\n", fails);
    return fails != 0;
  }
  {  // The bias gradient of a dy with no pixels (P = 0, as _C.conv2d_backward_bias can pass) or no images: zeros,
     // where the kernel would divide by PQ = 0.
    emu_expected_stream = reinterpret_cast<Stream>(std::uintptr_t(0x5700));
    for (int64_t n : {2, 0}) {
      ConvShape s;
      s.N = n, s.K = s.C = 3, s.P = s.H = n ? 0 : 2, s.Q = s.W = 4, s.R = s.S = 1;
      std::vector<float> db(3, NAN), ws(cuda::conv2d_workspace_floats(s, ConvPass::backward_bias) + 1, NAN);
      cuda::conv2d_backward_bias(nullptr, db.data(), s, ws.data(), int64_t(ws.size()), emu_expected_stream);
      if (db[0] != 0.f || db[1] != 0.f || db[2] != 0.f) { printf("EMPTY BIAS FAIL N=%ld\n", (long)n); return 1; }
    }
    printf("empty bias gradient ok\n");
  }
  // FastDiv check
  for (uint32_t d : {1u, 2u, 3u, 5u, 7u, 9u, 25u, 121u, 169u, 729u, 3025u, 50176u, 1000003u}) {
    FastDiv f(d);
    for (uint32_t n = 0; n < 3000000; n += (n < 100000 ? 1 : 997)) { uint32_t q, r; f.divmod(n, q, r); if (q != n / d || r != n % d) { printf("FASTDIV FAIL d=%u n=%u\n", d, n); return 1; } }
    for (uint32_t n : {2147483647u, 2147483646u, 1u << 30}) { if (f.div(n) != n / d) { printf("FASTDIV FAIL big d=%u n=%u\n", d, n); return 1; } }
  }
  printf("fastdiv ok\n");
  emu_expected_stream = reinterpret_cast<Stream>(std::uintptr_t(0x5700));  // not the default stream
  std::mt19937 gen(1);
  std::normal_distribution<float> nd;
  int fails = 0;
  long cases[][10] = {
    {1,3,7,7,4,3,3,1,1,1},{2,6,11,10,8,5,3,2,2,2},{1,4,13,13,4,11,11,4,2,4},{2,5,6,6,7,1,1,1,0,1},
    {3,8,9,9,12,3,3,3,3,4},{2,4,10,9,6,3,5,2,0,2},{1,7,8,8,5,5,3,1,3,1},{2,2,5,5,3,5,5,1,0,1},
    {1,3,4,4,2,5,5,1,1,1},{2,3,27,27,5,11,11,4,2,1},{1,9,12,11,6,3,3,2,1,3},{1,1,1,1,1,1,1,1,0,1},
    {2,3,6,5,2,2,2,4,1,1},
    {2,130,9,9,200,3,3,1,1,2},   // 100 rows per group: 128-row tiles, partial
    {1,12,13,13,384,3,3,1,1,2},  // 192 rows per group: 64-row tiles
    {1,5,40,33,129,5,3,2,1,1},   // 129 rows: two 128 tiles; several column tiles
    {3,16,27,27,32,5,5,1,2,2},   // conv2-like, many slices in dw
    {1,3,64,64,96,11,11,4,2,1},  // conv1-like
    // 64 x 192 filter-gradient tiles (col_fragments): direct (CRSg 1440) and Winograd (Cg 160) both use
    // them; then partial ones, several row tiles: direct 180 of 192 columns, Winograd 150 of 192
    {2,320,7,7,48,3,3,1,1,2},{1,20,6,6,140,3,3,1,1,1},{1,150,6,6,140,3,3,1,1,1},
    // 3x3 stride 1, for Winograd: pads 0-3 (3: the data gradient's padding 2 - pad is negative), H and W
    // odd and even, 1x1 and 2x2 inputs, channel counts that are not multiples of 4, groups 1 and 2
    {3,5,8,6,7,3,3,1,0,1},{1,6,9,10,10,3,3,1,2,2},{3,2,3,3,1,3,3,1,1,1},{1,1,1,1,1,3,3,1,1,1},
    {2,1,2,5,3,3,3,1,1,1},{1,4,4,5,4,3,3,1,3,2},{3,34,13,13,36,3,3,1,1,2},{2,40,11,12,24,3,3,1,1,1},
    {1,3,2,2,5,3,3,1,2,1},{2,9,13,7,66,3,3,1,0,1},
    // stride 2 with 32 or more channels per group: the data gradient must go by columns (the direct one is
    // stride 1 only; every strided case above had fewer than 32 channels per group, which goes by columns anyway)
    {2,40,9,8,24,3,3,2,1,1},{1,64,7,7,16,1,1,2,0,2},
  };
  // "auto" runs one of the other two (use_winograd decides; printed); the 1-image chunks run on device 0 only.
  const ConvAlgorithm algorithms[] = {ConvAlgorithm::automatic, ConvAlgorithm::direct, ConvAlgorithm::winograd};
  const char* algo_names[] = {"auto", "direct", "winograd", "winograd, 1-image chunks"};
  // Largest error relative to the float64 reference's largest magnitude, per algorithm (index into
  // algo_names; 4 = the CPU backend) and output (y, dx, dw, db).
  double worst_rel[5][4] = {};
  for (int device : {0, 1})
  for (auto& c : cases) {
    emu_device = device;
    ConvShape s; s.N=c[0]; s.C=c[1]; s.H=c[2]; s.W=c[3]; s.K=c[4]; s.R=c[5]; s.S=c[6]; s.stride=c[7]; s.pad=c[8]; s.groups=c[9];
    s.P = conv_out_size(s.H, s.R, s.stride, s.pad); s.Q = conv_out_size(s.W, s.S, s.stride, s.pad);
    std::vector<float> x(s.N*s.C*s.HW()), w(s.K*s.CRSg()), b(s.K), dy(s.N*s.K*s.PQ());
    for (auto* v : {&x, &w, &b, &dy}) for (auto& e : *v) e = nd(gen);
    std::vector<double> ry, rdx, rdw, rdb;  // float64 direct sums
    reference(s, x, w, b, dy, ry, rdx, rdw, rdb);
    // Outputs: y (with bias), y without bias, dx, dw, db.
    auto run = [&](bool gpu, std::vector<float>& y, std::vector<float>& y0, std::vector<float>& dx, std::vector<float>& dw, std::vector<float>& db) {
      y.assign(dy.size(), NAN); y0.assign(dy.size(), NAN); dx.assign(x.size(), NAN); dw.assign(w.size(), NAN); db.assign(s.K, NAN);
      auto wsn = [&](ConvPass p) { return gpu ? cuda::conv2d_workspace_floats(s, p) : cpu::conv2d_workspace_floats(s, p); };
      int64_t n = std::max({wsn(ConvPass::forward), wsn(ConvPass::backward_data), wsn(ConvPass::backward_filter),
                            wsn(ConvPass::backward_bias), int64_t(1)});
      std::vector<float> ws(n, NAN);
      if (gpu) {
        Stream st = emu_expected_stream;
        cuda::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), n, st);
        std::fill(ws.begin(), ws.end(), NAN);  // each pass must write what it reads
        cuda::conv2d_forward(x.data(), w.data(), nullptr, y0.data(), s, ws.data(), n, st);
        std::fill(ws.begin(), ws.end(), NAN);
        cuda::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), n, st);
        std::fill(ws.begin(), ws.end(), NAN);
        cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, st);
        cuda::conv2d_backward_bias(dy.data(), db.data(), s, ws.data(), n, st);
      } else {
        cpu::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_forward(x.data(), w.data(), nullptr, y0.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_bias(dy.data(), db.data(), s, ws.data(), n, nullptr);
      }
    };
    std::vector<double> ry0 = ry;
    for (size_t i = 0; i < ry0.size(); ++i) ry0[i] -= b[i / s.PQ() % s.K];
    const std::vector<double>* R[] = {&ry, &ry0, &rdx, &rdw, &rdb};
    std::vector<float> cpu_out[5], gpu_out[5];
    run(false, cpu_out[0], cpu_out[1], cpu_out[2], cpu_out[3], cpu_out[4]);
    auto note_rel = [&](int algo, std::vector<float>* out) {
      for (int i = 0; i < 5; ++i) {
        double sc; const double d = maxdiff_ref(*R[i], out[i], sc);
        double& wr = worst_rel[algo][i == 0 ? 0 : i - 1];
        wr = std::max(wr, d / std::max(sc, 1e-30));
      }
    };
    note_rel(4, cpu_out);
    const bool wino_ok = winograd::unsupported(s) == nullptr;
    const bool auto_winograd = winograd::use_winograd(s);  // s.algorithm is automatic here
    for (int a = 1; a < (device == 0 ? 4 : 3); ++a) {
      s.algorithm = algorithms[std::min(a, 2)];
      if (a >= 2 && !wino_ok) {  // a forced Winograd it cannot do is refused, never attempted
        int refused = 0;
        for (int p = 0; p < 3; ++p)
          try { cuda::conv2d_workspace_floats(s, ConvPass(p)); } catch (const KernelError&) { ++refused; }
        std::vector<float> out(dy.size(), NAN);
        try { cuda::conv2d_forward(x.data(), w.data(), b.data(), out.data(), s, nullptr, 0, emu_expected_stream); } catch (const KernelError&) { ++refused; }
        if (refused != 4) { printf("dev%d case %ld..: forced winograd was not refused (FAIL)\n", device, c[0]); ++fails; }
        break;
      }
      const int64_t saved_cap = winograd::kMaxChunkFloats;
      if (a == 3)  // the smallest chunk one image fits: every pass runs one chunk per image
        winograd::kMaxChunkFloats = 16 * (s.C + s.K) * winograd::round4(std::max(winograd::tiles_of(s.P, s.Q), winograd::tiles_of(s.H, s.W)));
      run(true, gpu_out[0], gpu_out[1], gpu_out[2], gpu_out[3], gpu_out[4]);
      int64_t chunks[3] = {0, 0, 0};
      if (a >= 2)
        for (int p = 0; p < 3; ++p) chunks[p] = cuda::winograd_plan(s, ConvPass(p)).chunks;
      winograd::kMaxChunkFloats = saved_cap;
      const char* names[] = {"y", "y(no bias)", "dx", "dw", "db"};
      printf("dev%d case %ld %ld %ld %ld %ld %ld %ld s%ld p%ld g%ld %s%s", device, c[0],c[1],c[2],c[3],c[4],c[5],c[6],c[7],c[8],c[9],
             algo_names[a], (a == 2) == auto_winograd ? " (= auto)" : "");
      if (a == 3) printf(" (chunks %ld/%ld/%ld)", (long)chunks[0], (long)chunks[1], (long)chunks[2]);
      printf(":");
      for (int i = 0; i < 5; ++i) {
        double sc; double d = maxdiff(cpu_out[i], gpu_out[i], sc);  // the CPU backend vs the emulated GPU, checked for NaN
        bool bad = !(d <= 1e-4 * std::max(1.0, sc));
        double rsc; const double rd = maxdiff_ref(*R[i], gpu_out[i], rsc);  // vs float64: the documented bound
        if (!(rd <= kRelTol * std::max(rsc, 1e-30))) bad = true;
        fails += bad;
        printf(" %s %.2e%s", names[i], d, bad ? "(FAIL)" : "");
      }
      note_rel(a, gpu_out);
      printf("\n");
      fflush(stdout);
    }
    s.algorithm = ConvAlgorithm::automatic;
  }
  printf("largest error / largest |float64 reference| (y, dx, dw, db), over all cases:\n");
  for (int a : {4, 1, 2, 3})
    printf("  %-26s %.2e %.2e %.2e %.2e\n", a == 4 ? "CPU backend" : algo_names[a], worst_rel[a][0], worst_rel[a][1],
           worst_rel[a][2], worst_rel[a][3]);
  fails += check_determinism();
  fails += check_fft();
  fails += check_grid_limits();
  fails += check_misaligned();
  fails += check_alexnet_batch128();
  printf(fails ? "FAILURES %d\n" : "ALL OK\n", fails);
  return fails != 0;
}

// ---------------------------------------------------------------------------------------------------------
// AlexNet's five layers at batch 128 (plus odd shapes): every launch configuration is checked in a dry run,
// then a few blocks of each kernel run for real: the blocks holding the LARGEST offsets (last column tile;
// for the filter gradient the last reduction slice), so a 32-bit index overflow shows up as wrong values (or
// as a UBSan/ASan report when run.sh builds with sanitizers). Written outputs are checked against a direct
// double-precision sum; unwritten ones stay NaN and are counted.
// ---------------------------------------------------------------------------------------------------------
// The same inputs give the same bits, run after run (Winograd's filter gradient with several slices and
// several chunks of images, and the direct one).
static int check_determinism() {
  ConvShape s; s.N = 5; s.C = 6; s.H = 27; s.W = 26; s.K = 10; s.R = s.S = 3; s.stride = 1; s.pad = 1; s.groups = 2;
  s.P = conv_out_size(s.H, 3, 1, 1); s.Q = conv_out_size(s.W, 3, 1, 1);
  std::mt19937 gen(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(s.N * s.C * s.HW()), dy(s.N * s.K * s.PQ());
  for (auto* v : {&x, &dy}) for (auto& e : *v) e = nd(gen);
  int fails = 0;
  for (ConvAlgorithm a : {ConvAlgorithm::direct, ConvAlgorithm::winograd}) {
    s.algorithm = a;
    const int64_t saved_cap = winograd::kMaxChunkFloats;
    winograd::kMaxChunkFloats = 16 * (s.C + s.K) * 2 * winograd::round4(winograd::tiles_of(s.H, s.W));
    const int64_t n = cuda::conv2d_workspace_floats(s, ConvPass::backward_filter);
    std::vector<float> dw1(s.K * s.CRSg()), dw2(dw1.size()), ws(std::max<int64_t>(n, 1), NAN);
    cuda::conv2d_backward_filter(dy.data(), x.data(), dw1.data(), s, ws.data(), n, emu_expected_stream);
    std::fill(ws.begin(), ws.end(), -1.f);
    cuda::conv2d_backward_filter(dy.data(), x.data(), dw2.data(), s, ws.data(), n, emu_expected_stream);
    const bool same = std::memcmp(dw1.data(), dw2.data(), sizeof(float) * dw1.size()) == 0;
    long slices = 0, chunks = 0;
    if (a == ConvAlgorithm::winograd) {
      const winograd::Plan plan = cuda::winograd_plan(s, ConvPass::backward_filter);
      slices = long(plan.slices), chunks = long(plan.chunks);
    }
    winograd::kMaxChunkFloats = saved_cap;
    if (a == ConvAlgorithm::direct)
      printf("filter gradient bit-identical across runs (direct): %s\n", same ? "yes" : "NO (FAIL)");
    else
      printf("filter gradient bit-identical across runs (winograd, %ld slices, %ld chunks): %s\n", slices, chunks,
             same ? "yes" : "NO (FAIL)");
    fails += !same;
    if (a == ConvAlgorithm::winograd && (slices < 2 || chunks < 2)) { printf("  expected several slices and chunks (FAIL)\n"); ++fails; }
  }
  return fails;
}

static ConvShape make_shape(long N, long C, long H, long W, long K, long R, long S, long stride, long pad, long groups) {
  ConvShape s; s.N=N; s.C=C; s.H=H; s.W=W; s.K=K; s.R=R; s.S=S; s.stride=stride; s.pad=pad; s.groups=groups;
  s.P = conv_out_size(H, R, stride, pad); s.Q = conv_out_size(W, S, stride, pad);
  return s;
}
static void fill(std::vector<float>& v, uint32_t seed) {
#pragma omp parallel for
  for (int64_t i = 0; i < int64_t(v.size()); ++i) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed; h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
    v[i] = float(h & 0xffff) / 32768.f - 1.f;
  }
}
static bool first_or_last_x(dim3 b, dim3 g) { return b.x == 0 || b.x == g.x - 1; }
static bool first_or_last_two_x(dim3 b, dim3 g) { return b.x == 0 || b.x + 2 >= g.x; }
static unsigned emu_last_z_from = 0;
static bool last_slice(dim3 b, dim3) { return b.z >= emu_last_z_from; }
// Compares every written (non-NaN) element of `got` with ref(i); `expect` = how many must have been written.
template <class Ref> static int compare_written(const char* what, const std::vector<float>& got, int64_t expect, Ref ref) {
  int64_t written = 0, bad = 0; double worst = 0;
#pragma omp parallel for reduction(+ : written, bad) reduction(max : worst)
  for (int64_t i = 0; i < int64_t(got.size()); ++i) {
    if (std::isnan(got[i])) continue;
    ++written;
    double r = ref(i), d = std::fabs(r - got[i]);
    worst = std::max(worst, d);
    if (!(d <= 1e-3 * std::max(1.0, std::fabs(r)))) ++bad;
  }
  printf("  %s: %lld written (expected %lld), max diff %.2e%s\n", what, (long long)written, (long long)expect, worst,
         bad || written != expect ? " FAIL" : "");
  return bad || written != expect;
}
// Winograd at batch 128 (conv3-conv5, forced): the transform kernels run whole (grid-stride loops over
// every tile; their grids are 1-D), the GEMMs only the blocks with the largest offsets: the first and last
// column tiles (tiles t of each chunk of images), or for the filter gradient the last reduction slice. The
// outputs of the other tiles read unwritten (NaN) workspace and stay NaN: compare_written counts them.
static bool transforms_and_first_or_last_x(dim3 b, dim3 g) { return (g.y == 1 && g.z == 1) || b.x == 0 || b.x == g.x - 1; }
// The filter gradient's GEMM runs once per chunk of images: only the last chunk's (whose partial sums the
// workspace holds at the end) runs its last slice.
static int emu_gemm_launches = 0, emu_gemm_launch_to_run = 0;
static bool transforms_and_last_slice(dim3 b, dim3 g) {
  if (g.y == 1 && g.z == 1) return true;
  if (b.x == 0 && b.y == 0 && b.z == 0) ++emu_gemm_launches;
  return emu_gemm_launches == emu_gemm_launch_to_run && b.z >= emu_last_z_from;
}
static int check_winograd_batch128(ConvShape s, int layer) {
  s.algorithm = ConvAlgorithm::winograd;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), P = s.P, Q = s.Q, H = s.H, W = s.W, K = s.K, C = s.C, pad = s.pad;
  printf("conv%d at batch 128, Winograd (largest offsets):\n", layer);
  fflush(stdout);
  std::vector<float> x(s.N * C * s.HW()), w(K * s.CRSg()), b(K), dy(s.N * K * s.PQ());
  fill(x, 11), fill(w, 12), fill(b, 13), fill(dy, 14);
  const Stream st = emu_expected_stream;
  int fails = 0;
  // Whether output (img, row, col) of a pass tiled by `plan` comes from a GEMM column tile that ran.
  auto selected = [&](const winograd::Plan& plan, int64_t img, int64_t row, int64_t col) {
    const int64_t chunk = img / plan.imgs_per_chunk, il = img % plan.imgs_per_chunk;
    const int64_t T = std::min(plan.imgs_per_chunk, s.N - chunk * plan.imgs_per_chunk) * plan.tiles;
    const int64_t t = il * plan.tiles + row / 2 * plan.tiles_q + col / 2;
    return t < 128 || t >= (T - 1) / 128 * 128;
  };
  emu_run_block = transforms_and_first_or_last_x;
  emu_grid_for_cap = 8;  // the transforms' grid-stride loops then go round many times
  {
    const winograd::Plan plan = cuda::winograd_plan(s, ConvPass::forward);
    std::vector<float> y(dy.size(), NAN), ws(plan.workspace_floats, NAN);
    cuda::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), int64_t(ws.size()), st);
    int64_t expect = 0;
    for (int64_t img = 0; img < s.N; ++img)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) expect += selected(plan, img, p, q) ? K : 0;
    printf("  forward: %ld chunk(s) of %ld images\n", (long)plan.chunks, (long)plan.imgs_per_chunk);
    fails += compare_written("y", y, expect, [&](int64_t i) {
      const int64_t q = i % Q, p = i / Q % P, k = i / (P * Q) % K, img = i / (P * Q * K), g = k / Kg;
      double sum = b[k];
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < 3; ++r)
          for (int64_t t = 0; t < 3; ++t) {
            const int64_t h = p - pad + r, ww = q - pad + t;
            if (h >= 0 && h < H && ww >= 0 && ww < W)
              sum += double(w[((k * Cg + c) * 3 + r) * 3 + t]) * x[((img * C + g * Cg + c) * H + h) * W + ww];
          }
      return sum;
    });
  }
  {
    const winograd::Plan plan = cuda::winograd_plan(s, ConvPass::backward_data);
    std::vector<float> dx(x.size(), NAN), ws(plan.workspace_floats, NAN);
    cuda::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), int64_t(ws.size()), st);
    int64_t expect = 0;
    for (int64_t img = 0; img < s.N; ++img)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t ww = 0; ww < W; ++ww) expect += selected(plan, img, h, ww) ? C : 0;
    printf("  data gradient: %ld chunk(s) of %ld images\n", (long)plan.chunks, (long)plan.imgs_per_chunk);
    fails += compare_written("dx", dx, expect, [&](int64_t i) {
      const int64_t ww = i % W, h = i / W % H, c = i / (H * W) % C, img = i / (H * W * C), g = c / Cg;
      double sum = 0;
      for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k)
        for (int64_t r = 0; r < 3; ++r)
          for (int64_t t = 0; t < 3; ++t) {
            const int64_t p = h + pad - r, q = ww + pad - t;
            if (p >= 0 && p < P && q >= 0 && q < Q)
              sum += double(w[((k * Cg + c % Cg) * 3 + r) * 3 + t]) * dy[((img * K + k) * P + p) * Q + q];
          }
      return sum;
    });
  }
  {  // filter gradient: the last slice's partial sums (Winograd domain, 16 per (k, c)) of the last chunk
    const winograd::Plan plan = cuda::winograd_plan(s, ConvPass::backward_filter);
    std::vector<float> dw(w.size(), NAN), ws(plan.workspace_floats, NAN);
    emu_last_z_from = unsigned((plan.slices - 1) * 16 * s.groups);
    emu_gemm_launches = 0, emu_gemm_launch_to_run = int(plan.chunks);
    emu_run_block = transforms_and_last_slice;
    cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), int64_t(ws.size()), st);
    const int64_t n = K * Cg;
    const float* part = ws.data() + plan.partial + (plan.slices - 1) * 16 * n;
    int64_t finite = 0;
    for (int64_t i = 0; i < 16 * n; ++i) finite += std::isfinite(part[i]);
    const int64_t img0 = (plan.chunks - 1) * plan.imgs_per_chunk, T = (s.N - img0) * plan.tiles;
    const int64_t kb = (plan.slices - 1) * plan.k_per_slice;
    // dw of the slice's tiles = G^T Dhat G (float64), against direct sums over those tiles.
    double worst = 0;
    int64_t bad = 0;
    for (int64_t k : {int64_t(0), Kg - 1, K - 1})
#pragma omp parallel for reduction(max : worst) reduction(+ : bad)
      for (int64_t c = 0; c < Cg; ++c) {
        double h[4][4], e[3][4], got[3][3];
        for (int xi = 0; xi < 16; ++xi) h[xi / 4][xi % 4] = part[xi * n + k * Cg + c];
        for (int j = 0; j < 4; ++j) {
          e[0][j] = h[0][j] + 0.5 * (h[1][j] + h[2][j]);
          e[1][j] = 0.5 * (h[1][j] - h[2][j]);
          e[2][j] = 0.5 * (h[1][j] + h[2][j]) + h[3][j];
        }
        for (int r = 0; r < 3; ++r) {
          got[r][0] = e[r][0] + 0.5 * (e[r][1] + e[r][2]);
          got[r][1] = 0.5 * (e[r][1] - e[r][2]);
          got[r][2] = 0.5 * (e[r][1] + e[r][2]) + e[r][3];
        }
        const int64_t g = k / Kg;
        for (int r = 0; r < 3; ++r)
          for (int t = 0; t < 3; ++t) {
            double sum = 0;
            for (int64_t tt = kb; tt < T; ++tt) {
              const int64_t img = img0 + tt / plan.tiles, tp = tt % plan.tiles / plan.tiles_q, tq = tt % plan.tiles_q;
              for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) {
                  const int64_t p = 2 * tp + i, q = 2 * tq + j, hh = p - pad + r, ww = q - pad + t;
                  if (p < P && q < Q && hh >= 0 && hh < H && ww >= 0 && ww < W)
                    sum += double(dy[((img * K + k) * P + p) * Q + q]) * x[((img * C + g * Cg + c) * H + hh) * W + ww];
                }
            }
            const double d = std::fabs(sum - got[r][t]);
            worst = std::max(worst, d);
            bad += !(d <= 1e-3 * std::max(1.0, std::fabs(sum)));
          }
      }
    printf("  filter gradient: %ld chunk(s) of %ld images, %ld slices of %ld tiles\n", (long)plan.chunks,
           (long)plan.imgs_per_chunk, (long)plan.slices, (long)plan.k_per_slice);
    printf("  dw (last slice of the last chunk): %lld of %lld partial sums written, sampled max diff %.2e%s\n",
           (long long)finite, (long long)(16 * n), worst, bad || finite != 16 * n ? " FAIL" : "");
    fails += bad || finite != 16 * n;
  }
  emu_run_block = nullptr;
  emu_grid_for_cap = 65535LL * 16;
  fflush(stdout);
  return fails;
}


// ---------------------------------------------------------------------------------------------------------
// The FFT filter gradient (algorithm "fft"): odd shapes (R != S, 1x1 to 9x9, channel and filter counts that are
// not multiples of 4 or of the GEMM tiles, groups 1-4, L = 16 and 32, one image, image counts that are not
// multiples of the GEMM's 8-image stages, huge padding), conv2's own shape, several chunks of images (the cap
// lowered), bit-identical reruns, refusals, and "fft" leaving the forward and data gradient to "auto".
// ---------------------------------------------------------------------------------------------------------
// Largest |error| / largest |float64 reference| the FFT filter gradient may have. Float32 FFTs err relative to
// the energy of the whole L x L correlation (each output mixes every bin), growing like log2(L); measured
// (printed below) at <= 3.2e-7 on these random inputs, so 5e-6 leaves a margin of 15x.
constexpr double kFftRelTol = 5e-6;
static int check_fft() {
  printf("FFT filter gradient:\n");
  // N, C, H, W, K, R, S, pad, groups, chunk (0: the default cap; c: a cap of c images per chunk)
  const long cases[][10] = {
      {2, 96, 27, 27, 256, 5, 5, 2, 2, 0},  // conv2 (L = 32, one 128x48 GEMM tile per bin and group)
      {1, 3, 7, 9, 4, 3, 5, 1, 1, 0},       // R != S, one image, L = 16
      {3, 6, 13, 13, 10, 3, 3, 1, 2, 0},    // conv3-5 like, 5 filters per group
      {2, 5, 6, 5, 7, 7, 7, 3, 1, 0},       // 7x7, odd counts
      {2, 4, 16, 13, 8, 1, 1, 0, 4, 0},     // 1x1, groups 4, odd width
      {2, 9, 12, 14, 6, 2, 3, 1, 3, 0},     // groups 3, padded width exactly 16
      {1, 2, 17, 9, 3, 1, 3, 0, 1, 0},      // 17 rows: L = 32 though the width fits 16
      {1, 2, 5, 5, 2, 1, 1, 13, 1, 0},      // padding 13: dy is 31x31, most of it sees only padding
      {5, 8, 16, 16, 12, 5, 3, 0, 2, 2},    // padded side exactly 16; 3 chunks (2, 2, 1 images)
      {3, 130, 9, 9, 200, 3, 3, 1, 2, 0},   // 100 filters and 65 channels per group: partial 128x48 tiles
      {2, 20, 12, 12, 300, 3, 3, 1, 1, 1},  // 3 filter tiles; one chunk per image
      {17, 3, 4, 4, 5, 3, 3, 1, 1, 0},      // 17 images: a partial 8-image GEMM stage
      {1, 1, 1, 1, 1, 1, 1, 0, 1, 0},
      {2, 3, 32, 32, 4, 3, 3, 0, 1, 0},     // 32 rows: every row of the grid holds data
      {2, 16, 8, 8, 16, 9, 9, 4, 1, 0},     // 9x9 filters
      {5, 3, 27, 27, 4, 5, 5, 2, 1, 3},     // conv2's planes, 2 chunks (3, 2)
  };
  std::mt19937 gen(3);
  std::normal_distribution<float> nd;
  const Stream st = emu_expected_stream;
  int fails = 0;
  double worst[2] = {0, 0};  // L = 16, 32
  for (const auto& c : cases) {
    ConvShape s = make_shape(c[0], c[1], c[2], c[3], c[4], c[5], c[6], 1, c[7], c[8]);
    s.algorithm = ConvAlgorithm::fft;
    if (const char* why = fft::unsupported(s)) { printf("  case %ld..: refused (%s) (FAIL)\n", c[0], why); ++fails; continue; }
    std::vector<float> x(s.N * s.C * s.HW()), w(s.K * s.CRSg()), b(s.K), dy(s.N * s.K * s.PQ());
    for (auto* v : {&x, &w, &b, &dy}) for (auto& e : *v) e = nd(gen);
    std::vector<double> ry, rdx, rdw, rdb;
    reference(s, x, w, b, dy, ry, rdx, rdw, rdb);
    const int64_t saved_cap = fft::kMaxChunkFloats;
    const int64_t bins = fft::bins_of(fft::transform_size(s));
    if (c[9]) fft::kMaxChunkFloats = 2 * bins * (s.C + s.K) * c[9];
    const fft::Plan plan = fft::plan(s);
    const int64_t n = cuda::conv2d_workspace_floats(s, ConvPass::backward_filter);
    if (n != plan.workspace_floats) { printf("  workspace %ld != plan %ld (FAIL)\n", (long)n, (long)plan.workspace_floats); ++fails; }
    std::vector<float> ws(std::max<int64_t>(n, 1) + 1, NAN), dw(w.size(), NAN), dw2(w.size(), NAN);
    cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, st);
    std::fill(ws.begin(), ws.end(), -7.f);  // a rerun must not depend on the workspace's old contents
    // nor on its alignment: a workspace one float off a 16-byte boundary (float2 regions; UBSan checks alignment)
    cuda::conv2d_backward_filter(dy.data(), x.data(), dw2.data(), s, ws.data() + 1, n, st);
    fft::kMaxChunkFloats = saved_cap;
    std::vector<float> cpu_dw(w.size(), NAN);
    {
      ConvShape sc = s;
      sc.algorithm = ConvAlgorithm::automatic;
      const int64_t m = std::max<int64_t>(cpu::conv2d_workspace_floats(sc, ConvPass::backward_filter), 1);
      std::vector<float> cws(m);
      cpu::conv2d_backward_filter(dy.data(), x.data(), cpu_dw.data(), sc, cws.data(), m, nullptr);
    }
    double sc_ref, sc_cpu;
    const double d_ref = maxdiff_ref(rdw, dw, sc_ref), d_cpu = maxdiff(cpu_dw, dw, sc_cpu);
    const double rel = d_ref / std::max(sc_ref, 1e-30), rel_cpu = d_cpu / std::max(sc_cpu, 1e-30);
    const bool same = std::memcmp(dw.data(), dw2.data(), sizeof(float) * dw.size()) == 0;
    const bool bad = !(rel <= kFftRelTol) || !(rel_cpu <= kFftRelTol) || !same || plan.chunks < (c[9] ? 2 : 1);
    worst[plan.L == 32] = std::max(worst[plan.L == 32], rel);
    printf("  case %ld %ld %ld %ld %ld %ld %ld p%ld g%ld: L=%ld, %ld chunk(s) of %ld, %ld planes/inverse block: "
           "vs float64 %.2e, vs CPU %.2e (relative), rerun %s%s\n", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
           c[8], (long)plan.L, (long)plan.chunks, (long)plan.imgs_per_chunk, (long)plan.planes_per_block, rel, rel_cpu,
           same ? "same bits" : "DIFFERENT", bad ? " (FAIL)" : "");
    fails += bad;
    fflush(stdout);
  }
  printf("  largest error / largest |float64 reference|: L=16 %.2e, L=32 %.2e (tolerance %.0e)\n", worst[0], worst[1],
         kFftRelTol);
  {  // Blocks in reverse order, the workspace NaN: the same bits. A GEMM block reading past its chunk's images (the
     // next bin's spectra, or past the last bin into dw_hat, unwritten yet) must mask them, as NaN * 0 is NaN.
    for (const ConvShape& s0 : {make_shape(8, 3, 6, 6, 5, 3, 3, 1, 1, 1), make_shape(17, 4, 5, 5, 6, 3, 3, 1, 1, 2)}) {
      ConvShape s = s0;
      s.algorithm = ConvAlgorithm::fft;
      std::vector<float> x(s.N * s.C * s.HW()), dy(s.N * s.K * s.PQ());
      fill(x, 41), fill(dy, 42);
      const int64_t n = cuda::conv2d_workspace_floats(s, ConvPass::backward_filter);
      std::vector<float> dw[2];
      for (int back = 0; back < 2; ++back) {
        std::vector<float> ws(n, NAN);
        dw[back].assign(s.K * s.CRSg(), NAN);
        emu_blocks_backwards = back;
        cuda::conv2d_backward_filter(dy.data(), x.data(), dw[back].data(), s, ws.data(), n, st);
        emu_blocks_backwards = false;
      }
      bool same = std::memcmp(dw[0].data(), dw[1].data(), dw[0].size() * sizeof(float)) == 0;
      for (float v : dw[1]) same = same && std::isfinite(v);
      printf("  blocks in reverse order, N%ld C%ld K%ld g%ld: %s\n", (long)s.N, (long)s.C, (long)s.K, (long)s.groups,
             same ? "same bits" : "DIFFERENT (FAIL)");
      fails += !same;
    }
  }
  {  // "fft" on the forward and the data gradient: what "auto" does, bit for bit, with the same workspace
    ConvShape s = make_shape(2, 6, 13, 13, 8, 3, 3, 1, 1, 2);
    std::vector<float> x(s.N * s.C * s.HW()), w(s.K * s.CRSg()), b(s.K), dy(s.N * s.K * s.PQ());
    for (auto* v : {&x, &w, &b, &dy}) for (auto& e : *v) e = nd(gen);
    std::vector<float> out[2][2];
    for (int a = 0; a < 2; ++a) {
      s.algorithm = a ? ConvAlgorithm::fft : ConvAlgorithm::automatic;
      const int64_t nf = cuda::conv2d_workspace_floats(s, ConvPass::forward), nd_ = cuda::conv2d_workspace_floats(s, ConvPass::backward_data);
      std::vector<float> ws(std::max<int64_t>({nf, nd_, 1}), NAN);
      out[a][0].assign(dy.size(), NAN), out[a][1].assign(x.size(), NAN);
      cuda::conv2d_forward(x.data(), w.data(), b.data(), out[a][0].data(), s, ws.data(), nf, st);
      cuda::conv2d_backward_data(dy.data(), w.data(), out[a][1].data(), s, ws.data(), nd_, st);
    }
    const bool same = out[0][0] == out[1][0] && out[0][1] == out[1][1];
    printf("  forward and data gradient under \"fft\" = \"auto\": %s\n", same ? "yes" : "NO (FAIL)");
    fails += !same;
  }
  {  // refused: stride 2, a 40x40 plane, a 30x30 plane with padding 2 (34 > 32); the launcher too
    const ConvShape bad[] = {make_shape(1, 3, 9, 9, 4, 3, 3, 2, 1, 1), make_shape(1, 3, 40, 40, 4, 3, 3, 1, 1, 1),
                             make_shape(1, 3, 30, 30, 4, 5, 5, 1, 2, 1)};
    for (ConvShape s : bad) {
      s.algorithm = ConvAlgorithm::fft;
      int refused = 0;
      try { cuda::conv2d_workspace_floats(s, ConvPass::backward_filter); } catch (const KernelError&) { ++refused; }
      std::vector<float> dw(s.K * s.CRSg(), NAN);
      try { cuda::conv2d_backward_filter(nullptr, nullptr, dw.data(), s, nullptr, 1 << 30, st); } catch (const KernelError&) { ++refused; }
      const bool ok = refused == 2 && fft::unsupported(s) != nullptr;
      printf("  refused %ldx%ld stride %ld padding %ld: %s\n", (long)s.H, (long)s.W, (long)s.stride, (long)s.pad,
             ok ? "yes" : "NO (FAIL)");
      fails += !ok;
    }
  }
  return fails;
}

// Past gridDim.y's 65535 row tiles a GEMM takes several launches, and past gridDim.x's 2^31 - 1 filters the bias
// kernel loops (shapes of 4.2M filters and more: too big to run here). With the limits lowered to 1 row tile and
// 3 bias blocks, small shapes take those paths: the same bits as in one launch, every element written.
namespace pya::cuda { extern int64_t kMaxRowTiles, kMaxBiasBlocks; }
static int check_grid_limits() {
  const ConvShape shapes[] = {
      make_shape(2, 5, 7, 7, 150, 3, 3, 1, 1, 1),    // forward / filter gradient: 150 rows (filters)
      make_shape(2, 20, 9, 8, 70, 3, 3, 2, 1, 1),    // data gradient by columns: 180 rows (C*R*S)
      make_shape(2, 140, 6, 5, 10, 3, 3, 1, 1, 2),   // direct data gradient: 70 rows (channels) per group
      make_shape(2, 130, 6, 6, 260, 3, 3, 1, 1, 1),  // Winograd's GEMMs (auto takes it): 260 and 130 rows
      make_shape(3, 4, 5, 6, 10, 1, 1, 1, 0, 1)};    // bias gradient: 10 filters over 3 blocks
  int fails = 0;
  emu_device = 0;
  for (const ConvShape& s : shapes) {
    std::vector<float> x(s.N * s.C * s.HW()), w(s.K * s.CRSg()), b(s.K), dy(s.N * s.K * s.PQ());
    fill(x, 21), fill(w, 22), fill(b, 23), fill(dy, 24);
    auto run = [&](std::vector<float>* out) {
      const Stream st = emu_expected_stream;
      out[0].assign(dy.size(), NAN), out[1].assign(x.size(), NAN), out[2].assign(w.size(), NAN), out[3].assign(s.K, NAN);
      auto ws = [&](ConvPass p) { return std::vector<float>(cuda::conv2d_workspace_floats(s, p) + 1, NAN); };
      std::vector<float> w0 = ws(ConvPass::forward), w1 = ws(ConvPass::backward_data),
                         w2 = ws(ConvPass::backward_filter), w3 = ws(ConvPass::backward_bias);
      cuda::conv2d_forward(x.data(), w.data(), b.data(), out[0].data(), s, w0.data(), int64_t(w0.size()), st);
      cuda::conv2d_backward_data(dy.data(), w.data(), out[1].data(), s, w1.data(), int64_t(w1.size()), st);
      cuda::conv2d_backward_filter(dy.data(), x.data(), out[2].data(), s, w2.data(), int64_t(w2.size()), st);
      cuda::conv2d_backward_bias(dy.data(), out[3].data(), s, w3.data(), int64_t(w3.size()), st);
    };
    std::vector<float> whole[4], split[4];
    run(whole);
    cuda::kMaxRowTiles = 1, cuda::kMaxBiasBlocks = 3;
    run(split);
    cuda::kMaxRowTiles = 65535, cuda::kMaxBiasBlocks = 2147483647;
    const char* names[] = {"y", "dx", "dw", "db"};
    printf("grid limits lowered, N%ld C%ld %ldx%ld K%ld %ldx%ld s%ld g%ld:", (long)s.N, (long)s.C, (long)s.H,
           (long)s.W, (long)s.K, (long)s.R, (long)s.S, (long)s.stride, (long)s.groups);
    for (int i = 0; i < 4; ++i) {
      bool bad = whole[i].size() != split[i].size() ||
                 std::memcmp(whole[i].data(), split[i].data(), whole[i].size() * sizeof(float)) != 0;
      for (float v : split[i]) bad = bad || std::isnan(v);  // every element written
      fails += bad;
      printf(" %s %s", names[i], bad ? "DIFFERS (FAIL)" : "same bits");
    }
    printf("\n");
  }
  return fails;
}

// Every input, output and the workspace one float past a 16-byte boundary (views at odd offsets, a workspace carved
// at an odd offset), direct and Winograd: the launchers must not take their float4/float2 loads (filter rows, U, the
// Winograd filter gradient's D and V), which fault on a GPU and abort here (__ldg checks alignment; UBSan too), and
// the results must be the aligned run's bits. Reduction lengths are multiples of 4 so those paths are on offer.
static int check_misaligned() {
  int fails = 0;
  emu_device = 0;
  const ConvShape shapes[] = {make_shape(2, 4, 7, 7, 8, 3, 3, 1, 1, 1), make_shape(2, 16, 6, 5, 12, 3, 3, 1, 1, 2)};
  for (ConvShape s : shapes)
    for (ConvAlgorithm a : {ConvAlgorithm::direct, ConvAlgorithm::winograd}) {
      s.algorithm = a;
      if (a == ConvAlgorithm::winograd && winograd::unsupported(s)) continue;
      std::vector<float> src[4];  // x, w, b, dy
      const int64_t sizes[4] = {s.N * s.C * s.HW(), s.K * s.CRSg(), s.K, s.N * s.K * s.PQ()};
      for (int i = 0; i < 4; ++i) src[i].resize(sizes[i]), fill(src[i], 31 + i);
      int64_t n = 1;
      for (int p = 0; p < 4; ++p) n = std::max(n, cuda::conv2d_workspace_floats(s, ConvPass(p)));
      std::vector<float> out[2][4];
      for (int off : {4, 1}) {  // floats past a 16-byte boundary
        std::vector<float> buf[4], ws(n + 4, NAN), res[4];
        const float* in[4];
        for (int i = 0; i < 4; ++i) {
          buf[i].assign(sizes[i] + 4, NAN);
          std::copy(src[i].begin(), src[i].end(), buf[i].begin() + off);
          in[i] = buf[i].data() + off;
        }
        const int64_t outs[4] = {sizes[3], sizes[0], sizes[1], s.K};  // y, dx, dw, db
        for (int i = 0; i < 4; ++i) res[i].assign(outs[i] + 4, NAN);
        float* w0 = ws.data() + off;
        const Stream st = emu_expected_stream;
        cuda::conv2d_forward(in[0], in[1], in[2], res[0].data() + off, s, w0, n, st);
        cuda::conv2d_backward_data(in[3], in[1], res[1].data() + off, s, w0, n, st);
        cuda::conv2d_backward_filter(in[3], in[0], res[2].data() + off, s, w0, n, st);
        cuda::conv2d_backward_bias(in[3], res[3].data() + off, s, w0, n, st);
        for (int i = 0; i < 4; ++i) out[off == 1][i].assign(res[i].begin() + off, res[i].begin() + off + outs[i]);
      }
      bool same = true;
      for (int i = 0; i < 4; ++i) {
        same = same && std::memcmp(out[0][i].data(), out[1][i].data(), out[0][i].size() * sizeof(float)) == 0;
        for (float v : out[1][i]) same = same && !std::isnan(v);
      }
      printf("misaligned pointers and workspace, N%ld C%ld K%ld g%ld %s: %s\n", (long)s.N, (long)s.C, (long)s.K,
             (long)s.groups, a == ConvAlgorithm::direct ? "direct" : "winograd", same ? "same bits" : "DIFFER (FAIL)");
      fails += !same;
    }
  return fails;
}

static int check_alexnet_batch128() {
  const ConvShape shapes[] = {
      make_shape(128, 3, 224, 224, 96, 11, 11, 4, 2, 1), make_shape(128, 96, 27, 27, 256, 5, 5, 1, 2, 2),
      make_shape(128, 256, 13, 13, 384, 3, 3, 1, 1, 1), make_shape(128, 384, 13, 13, 384, 3, 3, 1, 1, 2),
      make_shape(128, 384, 13, 13, 256, 3, 3, 1, 1, 2),
      // odd: batch 1, one channel, 1x1 filters, prime filter counts, huge groups count
      make_shape(1, 1, 1, 1, 1, 1, 1, 1, 0, 1), make_shape(1, 1, 300, 7, 13, 1, 1, 1, 0, 1),
      make_shape(3, 7, 5, 9, 11, 2, 3, 3, 1, 1), make_shape(2, 4096, 1, 1, 4096, 1, 1, 1, 0, 4096),
      make_shape(1, 70000, 1, 1, 70000, 1, 1, 1, 0, 70000), make_shape(1, 1, 1, 1, 70000, 1, 1, 1, 0, 1)};
  int fails = 0;
  emu_dry_run = true;  // configurations only: pointers are never touched
  for (int device : {0, 1})
    for (const ConvShape& s : shapes) {
      emu_device = device;
      float* fake = reinterpret_cast<float*>(std::uintptr_t(1) << 20);
      const Stream st = emu_expected_stream;
      auto ws = [&](ConvPass p) { return cuda::conv2d_workspace_floats(s, p); };
      // A launch the GPU would refuse must be refused by the launcher (KernelError), never attempted.
      auto attempt = [&](const char* what, auto call) {
        try { call(); } catch (const KernelError& e) { printf("  %s refused for groups=%ld: %s\n", what, (long)s.groups, e.what()); }
      };
      attempt("forward", [&] { cuda::conv2d_forward(fake, fake, fake, fake, s, fake, ws(ConvPass::forward), st); });
      attempt("backward_data", [&] { cuda::conv2d_backward_data(fake, fake, fake, s, fake, ws(ConvPass::backward_data), st); });
      attempt("backward_filter", [&] { cuda::conv2d_backward_filter(fake, fake, fake, s, fake, ws(ConvPass::backward_filter), st); });
      attempt("backward_bias", [&] { cuda::conv2d_backward_bias(fake, fake, s, fake, ws(ConvPass::backward_bias), st); });
    }
  // Every algorithm forced, where it applies (the calls above ran "auto"). conv2 at batch 128 runs the FFT filter
  // gradient in one chunk (the spectra of the 128 images take 196 MB).
  {
    ConvShape s = shapes[1];
    s.algorithm = ConvAlgorithm::fft;
    const fft::Plan plan = fft::plan(s);
    if (plan.chunks != 1 || plan.L != 32) { printf("conv2 FFT plan: %ld chunks, L=%ld (FAIL)\n", (long)plan.chunks, (long)plan.L); ++fails; }
  }
  for (int device : {0, 1})
    for (ConvShape s : shapes)
      for (ConvAlgorithm a : {ConvAlgorithm::direct, ConvAlgorithm::winograd, ConvAlgorithm::fft}) {
        if (a == ConvAlgorithm::winograd && winograd::unsupported(s)) continue;
        if (a == ConvAlgorithm::fft && fft::unsupported(s)) continue;
        emu_device = device;
        s.algorithm = a;
        float* fake = reinterpret_cast<float*>(std::uintptr_t(1) << 20);
        const Stream st = emu_expected_stream;
        auto ws = [&](ConvPass p) { return cuda::conv2d_workspace_floats(s, p); };
        // The direct path refuses more than 65535 groups, as above ("fft" runs it for the forward and the data
        // gradient); the FFT filter gradient's grids take any group count.
        const bool direct_refuses = a != ConvAlgorithm::winograd && s.groups > 65535;
        try {
          cuda::conv2d_forward(fake, fake, fake, fake, s, fake, ws(ConvPass::forward), st);
          cuda::conv2d_backward_data(fake, fake, fake, s, fake, ws(ConvPass::backward_data), st);
          cuda::conv2d_backward_filter(fake, fake, fake, s, fake, ws(ConvPass::backward_filter), st);
        } catch (const KernelError&) {
          if (!direct_refuses) throw;
        }
        if (a == ConvAlgorithm::fft && direct_refuses)
          cuda::conv2d_backward_filter(fake, fake, fake, s, fake, ws(ConvPass::backward_filter), st);
      }
  emu_dry_run = false;
  printf("launch configurations ok (AlexNet batch 128 and odd shapes)\n");
  emu_device = 0;
  for (int layer = 0; layer < 5; ++layer) {
    ConvShape s = shapes[layer];
    s.algorithm = ConvAlgorithm::direct;  // Winograd's blocks: check_winograd_batch128
    const int64_t Cg = s.Cg(), Kg = s.Kg(), R = s.R, S = s.S, P = s.P, Q = s.Q, H = s.H, W = s.W;
    const int64_t K = s.K, C = s.C, PQ = s.PQ(), HW = s.HW(), stride = s.stride, pad = s.pad;
    printf("conv%d at batch 128 (largest offsets):\n", layer + 1);
    fflush(stdout);
    std::vector<float> x(s.N * C * HW), w(K * s.CRSg()), b(K), dy(s.N * K * PQ);
    fill(x, 1), fill(w, 2), fill(b, 3), fill(dy, 4);
    const Stream st = emu_expected_stream;
    emu_run_block = first_or_last_x;
    {  // forward: columns (img, p, q) of the first and last 128-column tiles, every filter
      std::vector<float> y(dy.size(), NAN);
      cuda::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, nullptr, 0, st);
      const int64_t cols = s.N * PQ, last = cols - (cols - 1) / 128 * 128;
      fails += compare_written("y", y, K * (std::min<int64_t>(128, cols) + (cols > 128 ? last : 0)), [&](int64_t i) {
        const int64_t q = i % Q, p = i / Q % P, k = i / PQ % K, img = i / (PQ * K), g = k / Kg;
        double sum = b[k];
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t r = 0; r < R; ++r)
            for (int64_t t = 0; t < S; ++t) {
              const int64_t h = p * stride - pad + r, ww = q * stride - pad + t;
              if (h >= 0 && h < H && ww >= 0 && ww < W)
                sum += double(w[((k * Cg + c) * R + r) * S + t]) * x[((img * C + g * Cg + c) * H + h) * W + ww];
            }
        return sum;
      });
    }
    {  // input gradient. Direct: columns (img, h, w) of the first and last tiles, every channel. By columns
       // (conv1): per chunk of images, the first GEMM tile and the last two feed the dx elements of the
       // first and last two 256-thread blocks of the gather (the first and last rows of the chunk).
      std::vector<float> dx(x.size(), NAN);
      const int64_t need = cuda::conv2d_workspace_floats(s, ConvPass::backward_data);
      std::vector<float> ws(std::max<int64_t>(need, 1), NAN);
      if (need) emu_run_block = first_or_last_two_x;
      cuda::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, need ? ws.data() : nullptr, need, st);
      emu_run_block = first_or_last_x;
      int64_t expect = 0;
      if (need) {
        const int64_t per_img = C * HW, chunk_imgs = need / (C * R * S * PQ);
        for (int64_t img0 = 0; img0 < s.N; img0 += chunk_imgs) {
          const int64_t n = std::min(chunk_imgs, s.N - img0) * per_img, blocks = (n + 255) / 256;
          expect += blocks <= 3 ? n : 2 * 256 + (n - (n - 1) / 256 * 256);
        }
      } else {
        const int64_t cols = s.N * HW, last = cols - (cols - 1) / 128 * 128;
        expect = C * (std::min<int64_t>(128, cols) + (cols > 128 ? last : 0));
      }
      fails += compare_written("dx", dx, expect, [&](int64_t i) {
        const int64_t ww = i % W, h = i / W % H, c = i / HW % C, img = i / (HW * C), g = c / Cg;
        double sum = 0;
        for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k)
          for (int64_t r = 0; r < R; ++r)
            for (int64_t t = 0; t < S; ++t) {
              const int64_t hp = h + pad - r, wp = ww + pad - t;
              if (hp < 0 || wp < 0 || hp % stride || wp % stride || hp / stride >= P || wp / stride >= Q) continue;
              sum += double(w[((k * Cg + c % Cg) * R + r) * S + t]) * dy[((img * K + k) * P + hp / stride) * Q + wp / stride];
            }
        return sum;
      });
    }
    {  // filter gradient: the last reduction slice's partial sums (the workspace holds one per slice)
      const int64_t n_dw = K * s.CRSg(), need = cuda::conv2d_workspace_floats(s, ConvPass::backward_filter);
      const int64_t slices = need / n_dw, kdim = s.N * PQ;
      if (slices < 2) { printf("  conv%d: expected a sliced filter gradient\n", layer + 1); ++fails; continue; }
      // Mirrors filter_plan: slice depth = ceil(kdim / slices) rounded up to BK = 8 (then recounted).
      int64_t kps = 0;
      for (int64_t s0 = slices; s0 <= 2 * slices + 2 && !kps; ++s0) {
        const int64_t d = ((kdim + s0 - 1) / s0 + 7) / 8 * 8;
        if ((kdim + d - 1) / d == slices) kps = d;
      }
      const int64_t kb = (slices - 1) * kps;
      std::vector<float> ws(need, NAN), dw(n_dw, NAN);
      emu_last_z_from = unsigned((slices - 1) * s.groups);
      emu_run_block = last_slice;
      cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), need, st);
      std::vector<float> part(ws.begin() + (slices - 1) * n_dw, ws.end());
      fails += compare_written("dw (last slice)", part, n_dw, [&](int64_t i) {
        const int64_t t = i % S, r = i / S % R, c = i / (R * S) % Cg, k = i / s.CRSg(), g = k / Kg;
        double sum = 0;
        for (int64_t kk = kb; kk < kdim; ++kk) {
          const int64_t img = kk / PQ, p = kk % PQ / Q, q = kk % Q;
          const int64_t h = p * stride - pad + r, ww = q * stride - pad + t;
          if (h >= 0 && h < H && ww >= 0 && ww < W)
            sum += double(dy[(img * K + k) * PQ + p * Q + q]) * x[((img * C + g * Cg + c) * H + h) * W + ww];
        }
        return sum;
      });
    }
    emu_run_block = nullptr;
    {  // bias gradient: all of it (blocks of filters x splits of the images' pixels, then the splits' sum)
      std::vector<float> db(K, NAN);
      const int64_t need = cuda::conv2d_workspace_floats(s, ConvPass::backward_bias);
      std::vector<float> ws(need, NAN);
      printf("  bias gradient: %lld split(s) per filter\n", (long long)(need / K > 0 ? need / K : 1));
      cuda::conv2d_backward_bias(dy.data(), db.data(), s, need ? ws.data() : nullptr, need, st);
      fails += compare_written("db", db, K, [&](int64_t k) {
        double sum = 0;
        for (int64_t img = 0; img < s.N; ++img)
          for (int64_t pq = 0; pq < PQ; ++pq) sum += dy[(img * K + k) * PQ + pq];
        return sum;
      });
    }
    fflush(stdout);
  }
  for (int layer = 2; layer < 5; ++layer) fails += check_winograd_batch128(shapes[layer], layer + 1);
  return fails;
}
