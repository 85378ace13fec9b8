// See work_pool.h.
#include "work_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_PAUSE() _mm_pause()
#else
#define POOL_PAUSE() ((void)0)
#endif

namespace mlxrun_shim {
namespace {

// About 50-100 µs of spinning: longer than the gap between two matmuls of a decoder step,
// short enough that an idle engine stops burning a core almost at once.
constexpr int kSpinIterations = 20000;

class Pool {
 public:
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("MLXRUN_CPU_THREADS")) n = std::atoi(env);
    n = std::clamp(n, 1, 64);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { work(); });
    threads_ = n;
  }
  // Never destroyed (see instance()): joining at exit could race with static teardown of
  // the process, and the OS reclaims the threads.
  ~Pool() = delete;

  static Pool& instance() {
    static Pool* p = new Pool();
    return *p;
  }

  int threads() const { return threads_; }

  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || workers_.empty() || n == 1) {
      for (int i = 0; i < n; ++i) fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mutex_);
      fn_ = &fn;
      n_ = n;
      next_.store(0, std::memory_order_relaxed);
      pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    drain();
    // Workers must be done with fn (a reference to the caller's object) before returning.
    while (pending_.load(std::memory_order_acquire) != 0) POOL_PAUSE();
  }

 private:
  void drain() {
    for (int i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_;) (*fn_)(i);
  }

  void work() {
    unsigned seen = 0;
    for (;;) {
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
        POOL_PAUSE();
        ++spins;
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      drain();
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::thread> workers_;
  int threads_ = 1;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> next_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int)>* fn_ = nullptr;
  int n_ = 0;
};

}  // namespace

void parallel_for(int n, const std::function<void(int)>& fn) { Pool::instance().run(n, fn); }

int pool_threads() { return Pool::instance().threads(); }

}  // namespace mlxrun_shim
