// Compares the emulated CUDA conv launchers (see run.sh) with the CPU backend, and checks FastDiv.
#include <cstdio>
#include <algorithm>
#include <random>
#include <vector>
#include <cmath>
#include "conv.h"
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
int main(int argc, char** argv) {
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
  };
  for (int device : {0, 1})
  for (auto& c : cases) {
    emu_device = device;
    ConvShape s; s.N=c[0]; s.C=c[1]; s.H=c[2]; s.W=c[3]; s.K=c[4]; s.R=c[5]; s.S=c[6]; s.stride=c[7]; s.pad=c[8]; s.groups=c[9];
    s.P = conv_out_size(s.H, s.R, s.stride, s.pad); s.Q = conv_out_size(s.W, s.S, s.stride, s.pad);
    std::vector<float> x(s.N*s.C*s.HW()), w(s.K*s.CRSg()), b(s.K), dy(s.N*s.K*s.PQ());
    for (auto* v : {&x, &w, &b, &dy}) for (auto& e : *v) e = nd(gen);
    auto run = [&](bool gpu, std::vector<float>& y, std::vector<float>& dx, std::vector<float>& dw, std::vector<float>& db) {
      y.assign(dy.size(), NAN); dx.assign(x.size(), NAN); dw.assign(w.size(), NAN); db.assign(s.K, NAN);
      auto wsn = [&](ConvPass p) { return gpu ? cuda::conv2d_workspace_floats(s, p) : cpu::conv2d_workspace_floats(s, p); };
      int64_t n = std::max({wsn(ConvPass::forward), wsn(ConvPass::backward_data), wsn(ConvPass::backward_filter), int64_t(1)});
      std::vector<float> ws(n, NAN);
      if (gpu) {
        Stream st = emu_expected_stream;
        cuda::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), n, st);
        cuda::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), n, st);
        cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, st);
        cuda::conv2d_backward_bias(dy.data(), db.data(), s, ws.data(), n, st);
      } else {
        cpu::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, nullptr);
        cpu::conv2d_backward_bias(dy.data(), db.data(), s, ws.data(), n, nullptr);
      }
    };
    std::vector<float> y1, dx1, dw1, db1, y2, dx2, dw2, db2;
    run(false, y1, dx1, dw1, db1);
    run(true, y2, dx2, dw2, db2);
    const char* names[] = {"y", "dx", "dw", "db"};
    std::vector<float>* A[] = {&y1, &dx1, &dw1, &db1}; std::vector<float>* B[] = {&y2, &dx2, &dw2, &db2};
    printf("dev%d case %ld %ld %ld %ld %ld %ld %ld s%ld p%ld g%ld ws=%ld:", device, c[0],c[1],c[2],c[3],c[4],c[5],c[6],c[7],c[8],c[9], (long)cuda::conv2d_workspace_floats(s, ConvPass::backward_filter));
    for (int i = 0; i < 4; ++i) {
      double sc; double d = maxdiff(*A[i], *B[i], sc);  // A: the CPU reference; B: the emulated GPU, checked for NaN
      bool bad = !(d <= 1e-4 * std::max(1.0, sc));
      fails += bad;
      printf(" %s %.2e%s", names[i], d, bad ? "(FAIL)" : "");
    }
    printf("\n");
    fflush(stdout);
  }
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
  emu_dry_run = false;
  printf("launch configurations ok (AlexNet batch 128 and odd shapes)\n");
  emu_device = 0;
  for (int layer = 0; layer < 5; ++layer) {
    const ConvShape& s = shapes[layer];
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
    {  // bias gradient: all of it (one block per filter)
      std::vector<float> db(K, NAN);
      cuda::conv2d_backward_bias(dy.data(), db.data(), s, nullptr, 0, st);
      fails += compare_written("db", db, K, [&](int64_t k) {
        double sum = 0;
        for (int64_t img = 0; img < s.N; ++img)
          for (int64_t pq = 0; pq < PQ; ++pq) sum += dy[(img * K + k) * PQ + pq];
        return sum;
      });
    }
    fflush(stdout);
  }
  return fails;
}
