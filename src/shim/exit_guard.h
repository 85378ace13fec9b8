// Lets the process exit while MLX work is in flight: see exit_guard.cpp.
#pragma once

#include "mlx/mlx.h"

namespace shim_exit {

// Held by every shim call that touches MLX. `queues`: the call queues MLX work or waits
// for it (eval, async_eval, reading an array, synchronize); the first such call registers
// the exit handler, once MLX's singletons exist. `builds`: any other call (building an op,
// freeing an array). Once the process has begun to exit, constructing one on any other
// thread than the exiting one parks that thread for good.
class WorkScope {
 public:
  enum class Kind { queues, builds };
  explicit WorkScope(Kind kind = Kind::queues);
  ~WorkScope();
  WorkScope(const WorkScope&) = delete;
  WorkScope& operator=(const WorkScope&) = delete;

 private:
  bool queues_;
};

// A stream the exit handler must also wait for (one made by shim_new_stream).
void track_stream(const mlx::core::Stream& s);

// Says that a stream may be stuck for good: a distributed collective whose peer is gone
// can leave MLX's stream thread waiting forever, and waiting for it at exit would hang the
// exit. After this, the exit handler drains nothing (and OpenBLAS's shutdown may then meet
// a worker still busy: callers that can should end the process with _exit).
void abandon_streams();
bool streams_abandoned();

}  // namespace shim_exit
