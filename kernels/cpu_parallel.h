// When a CPU kernel's loop is worth an OpenMP parallel region.
//
// pyalexnet's OpenMP threads sleep between regions (OMP_WAIT_POLICY=passive, set by pyalexnet._backend:
// spinning threads took the cores that numpy's BLAS, the data loader or other programs wanted, and a step
// on a busy machine ran 3.5x slower), so every region pays to wake them and to put them to sleep again at
// its end: 50-100 us on the 2-core machines measured, where one core streams 1 MB of float32 in ~35 us.
// Below these sizes one thread finishes first. Measured on 2 shared Zen 3 cores (us, 1 thread / 2 threads):
// relu of 512 KB 20 / 78-85, 2 MB 69-75 / 127-157, 8 MB 335-546 / 258-361; the SGD update of 512 KB 33-37 /
// 105-141; pooling's backward from winner bytes of 512 KB 57 / 135; LRN forward of 512 KB 231-241 /
// 207-229 and of 2 MB 646-860 / 554-586.
#pragma once
#include <cstdint>

namespace pya::cpu {

// Elements of a pass of a few operations each (ReLU, the SGD update, dropout, pooling's backward).
constexpr int64_t kStreamParallelMin = int64_t(1) << 20;
// Elements of a pass of tens of operations each (LRN, pooling's forward, the softmax rows).
constexpr int64_t kComputeParallelMin = int64_t(1) << 17;

}  // namespace pya::cpu
