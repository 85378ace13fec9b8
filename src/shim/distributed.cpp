// MLX's distributed layer behind the shim's C surface (see distributed.h). Kept apart from
// shim.cpp so that the collectives and the bounded init live in one small place.
#include "distributed.h"
#include "dist_wait.h"
#include "exit_guard.h"

#include <time.h>

#include <atomic>

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "mlx/mlx.h"
#include "mlx/distributed/distributed.h"
#include "mlx/distributed/ops.h"

namespace mx = mlx::core;
namespace md = mlx::core::distributed;

struct shim_group {
  md::Group group;
};

namespace {

// Each call counts as shim work, as shim.cpp's calls do (see exit_guard.cpp).
#define DIST_TRY(...)                                  \
  try {                                                \
    shim_exit::WorkScope call_scope_(shim_exit::WorkScope::Kind::builds); \
    __VA_ARGS__;                                       \
    return 0;                                          \
  } catch (const std::exception& e) {                  \
    shim_set_error(e.what());                          \
    return 1;                                          \
  } catch (...) {                                      \
    shim_set_error("unknown C++ exception in MLX's distributed layer"); \
    return 1;                                          \
  }

const mx::array& A(const shim_array* a) {
  if (!a) throw std::invalid_argument("null array handle");
  return *reinterpret_cast<const mx::array*>(a);
}
const md::Group& G(const shim_group* g) {
  if (!g) throw std::invalid_argument("null distributed group handle");
  return g->group;
}
void put(shim_array** out, mx::array a) {
  if (!out) throw std::invalid_argument("null output pointer");
  *out = reinterpret_cast<shim_array*>(new mx::array(std::move(a)));
}

// The idle timeout of the group this process joined, in seconds; 0 = none joined.
std::atomic<double> g_idle_timeout{0};

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

}  // namespace

namespace shim_dist {

void wait_bounded(const std::vector<mx::array>& arrays, double timeout);

void eval(const std::vector<mx::array>& arrays) {
  const double timeout = g_idle_timeout.load();
  if (timeout <= 0) {
    mx::eval(arrays);
    return;
  }
  // The ring backend fails the transfers pending when a peer's socket closes, but a
  // collective queued after that waits forever on a transfer that never runs (seen with
  // MLX 0.32: the stream thread blocked in RingGroup::all_reduce's future). Computing
  // burns CPU time; waiting on peers does not. So: no CPU used for `timeout` seconds while
  // the arrays are not ready means the group is stuck.
  try {
    wait_bounded(arrays, timeout);
  } catch (...) {
    // Whatever failed inside a group's work may have left a collective waiting for good.
    shim_exit::abandon_streams();
    throw;
  }
}

void wait_bounded(const std::vector<mx::array>& arrays, double timeout) {
  mx::async_eval(arrays);
  using clock = std::chrono::steady_clock;
  auto last_progress = clock::now();
  auto window_start = last_progress;
  double window_cpu = process_cpu_seconds();
  auto nap = std::chrono::microseconds(50);
  for (;;) {
    bool ready = true;
    for (const auto& a : arrays) ready = ready && a.is_available();
    if (ready) break;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(20000));
    const auto now = clock::now();
    const double wall = std::chrono::duration<double>(now - window_start).count();
    if (wall < 0.2) continue;
    // Computing keeps at least one core busy; idle threads and this loop use a sliver of
    // one. What counts is the rate over the last window, not CPU time trickling up.
    const double cpu = process_cpu_seconds();
    if (cpu - window_cpu > 0.25 * wall) last_progress = now;
    window_start = now;
    window_cpu = cpu;
    if (std::chrono::duration<double>(now - last_progress).count() > timeout) {
      throw std::runtime_error("[distributed] no progress for " + std::to_string(int(timeout)) +
                               " s while waiting on the group: a peer is gone or stuck");
    }
  }
  // Ready: this returns at once, or throws the error the work ended with.
  mx::eval(arrays);
}

}  // namespace shim_dist

extern "C" {

int shim_dist_is_available(const char* backend) {
  try {
    return md::is_available(backend ? backend : "any") ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int shim_dist_init(const char* backend, double timeout_s, shim_group** out) {
  DIST_TRY({
    if (!out) throw std::invalid_argument("null output pointer");
    if (!(timeout_s > 0)) throw std::invalid_argument("the distributed init timeout must be > 0 seconds");
    std::string bk = backend ? backend : "any";
    if (!md::is_available(bk)) {
      throw std::runtime_error("the distributed backend \"" + bk + "\" is not available in this MLX build");
    }
    // MLX's init blocks until every peer has connected (the ring backend retries its
    // connects and accepts forever), so a missing peer would hang the caller. It runs on its
    // own thread instead; on timeout that thread is left behind, detached, still waiting.
    auto result = std::make_shared<std::promise<md::Group>>();
    auto fut = result->get_future();
    std::thread([result, bk]() {
      try {
        result->set_value(md::init(true, bk));
      } catch (...) {
        result->set_exception(std::current_exception());
      }
    }).detach();
    auto wait = std::chrono::duration<double>(timeout_s);
    if (fut.wait_for(wait) != std::future_status::ready) {
      throw std::runtime_error("distributed init over \"" + bk + "\" timed out after " +
                               std::to_string(timeout_s) +
                               " s: not every peer in the hostfile connected (is every rank started, "
                               "with its own MLX_RANK and the same MLX_HOSTFILE?)");
    }
    *out = new shim_group{fut.get()};
    // From now on every wait is bounded (see shim_dist::eval), as long as the init was.
    g_idle_timeout.store(timeout_s);
  })
}

void shim_group_free(shim_group* g) { delete g; }

int shim_dist_failed(void) { return shim_exit::streams_abandoned() ? 1 : 0; }

int shim_group_rank(const shim_group* g) { return g ? g->group.rank() : -1; }
int shim_group_size(const shim_group* g) { return g ? g->group.size() : -1; }

int shim_dist_all_sum(const shim_array* x, const shim_group* g, shim_array** out) {
  DIST_TRY(put(out, md::all_sum(A(x), G(g))))
}
int shim_dist_all_max(const shim_array* x, const shim_group* g, shim_array** out) {
  DIST_TRY(put(out, md::all_max(A(x), G(g))))
}
int shim_dist_all_gather(const shim_array* x, const shim_group* g, shim_array** out) {
  DIST_TRY(put(out, md::all_gather(A(x), G(g))))
}
int shim_dist_send(const shim_array* x, int dst, const shim_group* g, shim_array** out) {
  DIST_TRY(put(out, md::send(A(x), dst, G(g))))
}
int shim_dist_recv_like(const shim_array* like, int src, const shim_group* g, shim_array** out) {
  DIST_TRY(put(out, md::recv_like(A(like), src, G(g))))
}

}  // extern "C"
