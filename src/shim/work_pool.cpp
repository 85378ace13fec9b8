// See work_pool.h.
#include "work_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
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

// Spinning after a job: about 40 µs of pause instructions, then yields, then sleep. Long
// enough to catch the next matmul of a decoder step; yielding so that on a busy machine
// the spinning thread gives its core to the threads doing work.
constexpr int kSpinPauses = 2000;
constexpr int kSpinYields = 50;

// One parallel_for: its chunks are claimed through `next` by whichever threads come, so a
// worker that is not scheduled in time simply takes none (the caller does them all). Held
// by shared_ptr, so a worker that arrives late touches a live object.
struct Job {
  const std::function<void(int)>* fn;
  int n;
  std::atomic<int> next{0};
  std::atomic<int> done{0};

  void drain() {
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      (*fn)(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

class Pool {
 public:
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("MLXRUN_CPU_THREADS")) n = std::atoi(env);
    n = std::clamp(n, 1, 64);
    for (int i = 1; i < n; ++i) std::thread([this] { work(); }).detach();
    threads_ = n;
  }

  // Never destroyed: the workers are detached and run until the process ends.
  static Pool& instance() {
    static Pool* p = new Pool();
    return *p;
  }

  int threads() const { return threads_; }

  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || threads_ == 1 || n == 1) {
      for (int i = 0; i < n; ++i) fn(i);
      return;
    }
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n = n;
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_all();
    job->drain();
    // Only chunks a worker has claimed and is running remain.
    while (job->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
  }

 private:
  void work() {
    unsigned seen = 0;
    for (;;) {
      auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      for (int i = 0; i < kSpinPauses && !changed(); ++i) POOL_PAUSE();
      for (int i = 0; i < kSpinYields && !changed(); ++i) std::this_thread::yield();
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        if (!changed()) {
          ++sleepers_;
          cv_.wait(lk, changed);
          --sleepers_;
        }
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      job->drain();
    }
  }

  int threads_ = 1;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<unsigned> generation_{0};
  int sleepers_ = 0;
  std::shared_ptr<Job> job_;
};

}  // namespace

void parallel_for(int n, const std::function<void(int)>& fn) { Pool::instance().run(n, fn); }

int pool_threads() { return Pool::instance().threads(); }

}  // namespace mlxrun_shim
