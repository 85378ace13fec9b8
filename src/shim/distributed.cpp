// MLX's distributed layer behind the shim's C surface (see distributed.h). Kept apart from
// shim.cpp so that the collectives and the bounded init live in one small place.
#include "distributed.h"

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

#define DIST_TRY(...)                                  \
  try {                                                \
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

}  // namespace

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
  })
}

void shim_group_free(shim_group* g) { delete g; }

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
