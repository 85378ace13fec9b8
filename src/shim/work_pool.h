// A small persistent thread pool for the CPU kernels of the shim (cpu_qmm). Threads are
// made once: starting threads per call costs tens of microseconds, as much as a decode-size
// matmul. Workers spin briefly after a job before they sleep, because a decoder step runs
// hundreds of small matmuls back to back and waking a sleeping thread costs about as much.
#pragma once

#include <functional>

namespace mlxrun_shim {

// Runs fn(i) for every i in [0, n), on the calling thread and the pool's workers, and
// returns when all have run. Calls made while another is in progress (another thread)
// run on the caller alone. fn must not throw.
void parallel_for(int n, const std::function<void(int)>& fn);

// How many threads a parallel_for uses (workers + the caller).
int pool_threads();

}  // namespace mlxrun_shim
