// Compares the emulated CUDA conv launchers (see run.sh) with the CPU backend, and checks FastDiv.
#include <cstdio>
#include <algorithm>
#include <random>
#include <vector>
#include <cmath>
#include "conv.h"
#include "emu_prelude.h"
using namespace pya;
static double maxdiff(const std::vector<float>& a, const std::vector<float>& b, double& scale) {
  double m = 0; scale = 0;
  for (size_t i = 0; i < a.size(); ++i) { m = std::max(m, (double)std::fabs(a[i] - b[i])); scale = std::max(scale, (double)std::fabs(b[i])); }
  return m;
}
int main(int argc, char** argv) {
  // FastDiv check
  for (uint32_t d : {1u, 2u, 3u, 5u, 7u, 9u, 25u, 121u, 169u, 729u, 3025u, 50176u, 1000003u}) {
    FastDiv f(d);
    for (uint32_t n = 0; n < 3000000; n += (n < 100000 ? 1 : 997)) { uint32_t q, r; f.divmod(n, q, r); if (q != n / d || r != n % d) { printf("FASTDIV FAIL d=%u n=%u\n", d, n); return 1; } }
    for (uint32_t n : {2147483647u, 2147483646u, 1u << 30}) { if (f.div(n) != n / d) { printf("FASTDIV FAIL big d=%u n=%u\n", d, n); return 1; } }
  }
  printf("fastdiv ok\n");
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
      y.assign(dy.size(), 0); dx.assign(x.size(), 0); dw.assign(w.size(), -7); db.assign(s.K, 0);
      auto wsn = [&](ConvPass p) { return gpu ? cuda::conv2d_workspace_floats(s, p) : cpu::conv2d_workspace_floats(s, p); };
      int64_t n = std::max({wsn(ConvPass::forward), wsn(ConvPass::backward_data), wsn(ConvPass::backward_filter), int64_t(1)});
      std::vector<float> ws(n, NAN);
      if (gpu) {
        cuda::conv2d_forward(x.data(), w.data(), b.data(), y.data(), s, ws.data(), n, nullptr);
        cuda::conv2d_backward_data(dy.data(), w.data(), dx.data(), s, ws.data(), n, nullptr);
        cuda::conv2d_backward_filter(dy.data(), x.data(), dw.data(), s, ws.data(), n, nullptr);
        cuda::conv2d_backward_bias(dy.data(), db.data(), s, ws.data(), n, nullptr);
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
      double sc; double d = maxdiff(*B[i], *A[i], sc);
      bool bad = !(d <= 1e-4 * std::max(1.0, sc));
      fails += bad;
      printf(" %s %.2e%s", names[i], d, bad ? "(FAIL)" : "");
    }
    printf("\n");
    fflush(stdout);
  }
  printf(fails ? "FAILURES %d\n" : "ALL OK\n", fails);
  return fails != 0;
}
