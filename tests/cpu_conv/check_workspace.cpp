// The CPU convolutions stay inside the workspace they ask for (conv2d_workspace_floats), whatever the thread
// count: built with AddressSanitizer by tests/test_conv.py, each pass runs on an exactly sized heap buffer,
// so a write or read past its end aborts. The outputs are compared bit for bit across 1, 2 and 3 threads.
// The workspace's cut follows the thread count (images per product, one buffer per thread), and one bug
// had sized a thread's buffer inside the parallel region (where it saw 1 thread) and so wrote past the end.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "conv.h"

using namespace pya;

namespace {

std::vector<float> run(const ConvShape& s, ConvPass pass, const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& dy) {
  std::vector<float> work(static_cast<size_t>(cpu::conv2d_workspace_floats(s, pass)));  // exactly sized
  std::vector<float> out(pass == ConvPass::forward ? dy.size() : pass == ConvPass::backward_data ? x.size() : w.size());
  if (pass == ConvPass::forward)
    cpu::conv2d_forward(x.data(), w.data(), nullptr, out.data(), s, work.data(), work.size(), nullptr);
  else if (pass == ConvPass::backward_data)
    cpu::conv2d_backward_data(dy.data(), w.data(), out.data(), s, work.data(), work.size(), nullptr);
  else
    cpu::conv2d_backward_filter(dy.data(), x.data(), out.data(), s, work.data(), work.size(), nullptr);
  return out;
}

}  // namespace

int main() {
  // N, C, H, K, R, stride, pad, groups: the small preset's layers at batch 32, odd batches of small maps, and
  // filter gradients large enough to go by tap tiles.
  const int64_t cases[][8] = {{32, 64, 7, 48, 3, 1, 1, 1},  {32, 48, 7, 32, 3, 1, 1, 1}, {13, 32, 7, 48, 3, 1, 1, 1},
                              {9, 32, 11, 64, 3, 2, 1, 2},  {45, 8, 7, 16, 3, 1, 1, 1},  {32, 16, 15, 32, 5, 1, 2, 1},
                              {5, 3, 32, 16, 5, 1, 2, 1},   {7, 24, 5, 32, 3, 1, 1, 2},  {2, 64, 4, 48, 3, 1, 1, 1},
                              // filter gradients by tap tiles, one image and several per product
                              {3, 96, 17, 160, 3, 1, 1, 2}, {13, 64, 7, 128, 3, 1, 1, 1}};
  int failures = 0;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  for (const auto& c : cases) {
    ConvShape s;
    s.N = c[0], s.C = c[1], s.H = s.W = c[2], s.K = c[3], s.R = s.S = c[4], s.stride = c[5], s.pad = c[6],
    s.groups = c[7];
    s.P = s.Q = conv_out_size(s.H, s.R, s.stride, s.pad);
    std::vector<float> x(s.N * s.C * s.HW()), w(s.K * s.CRSg()), dy(s.N * s.K * s.PQ());
    for (auto* v : {&x, &w, &dy})
      for (float& e : *v) e = normal(gen);
    for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
      std::vector<float> first;
      for (int threads = 1; threads <= 3; ++threads) {
        omp_set_num_threads(threads);
        const std::vector<float> out = run(s, pass, x, w, dy);
        if (threads == 1) {
          first = out;
        } else if (std::memcmp(out.data(), first.data(), sizeof(float) * out.size()) != 0) {
          std::printf("N=%ld C=%ld H=%ld K=%ld pass %d: %d threads give other bits than 1 (FAIL)\n", s.N, s.C, s.H,
                      s.K, static_cast<int>(pass), threads);
          ++failures;
        }
      }
    }
  }
  std::printf(failures ? "FAILED\n" : "ALL OK\n");
  return failures ? 1 : 0;
}
