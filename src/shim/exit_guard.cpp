// Leaving the process cleanly while MLX still has work in flight.
//
// Why: a program can exit -- return from main, call exit() -- while MLX is running work on
// its stream threads: another thread is still generating, or a queued step was never
// waited for. The C exit handlers then run beside that work. OpenBLAS's (gotoblas_quit ->
// blas_thread_shutdown_) posts "stop" to each of its worker threads and joins them; a
// worker that is in the middle of an sgemm for MLX's stream thread stores "idle" over the
// stop request when it finishes, never sees it, and the join waits forever. Measured with
// tests/c/exit_after_generate.c ("busy": exit while another thread generates, 2 OpenBLAS
// threads): Debian's OpenBLAS 0.3.21 hung in 5 of 60 runs and crashed in 2; OpenBLAS 0.3.31
// hung in 3 of 60 and crashed in 5 -- a newer OpenBLAS does not remove the race, which is
// in how its shutdown meets a concurrent caller, not in one release. MLX's own exit-time
// destructors can likewise free what a running task still uses.
//
// So the first WorkScope that queues work registers an exit handler that runs before
// those: it stops new work from starting on other threads, waits for the shim calls
// already under way, then waits until every stream that was used has drained. When it
// returns, no BLAS call is in flight and OpenBLAS's shutdown joins idle workers. A thread
// that calls into MLX after that is parked where it stands (before touching MLX, holding
// none of its locks): the process is ending, and the exit system call ends that thread
// with the rest.
//
// Every shim call counts, not only those that queue or wait: building an op reaches MLX's
// scheduler (for its stream) and freeing an array reaches its allocator, and both are
// static objects whose destructors run right after this handler. A thread still building
// its next step then used them destroyed: "busy" exits crashed (SIGSEGV) about once in
// forty runs on a loaded two-core machine while only eval, reads and synchronize counted.
#include "exit_guard.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace mx = mlx::core;

namespace shim_exit {
namespace {

std::atomic<bool> g_exiting{false};
// Set on the thread that runs the exit handler: the handlers and destructors that run
// after it on that thread (a global object freeing a model, say) may still use MLX, since
// nothing else can run beside them.
thread_local bool t_exit_thread = false;
thread_local bool t_stream_known = false;
// How many scopes this thread is inside.
thread_local int t_depth = 0;
// Threads inside a shim call (between the outermost WorkScope's constructor and destructor).
std::atomic<int> g_busy{0};
std::atomic<bool> g_abandoned{false};
std::once_flag g_registered;
pid_t g_pid = 0;
// How long the handler waits for calls already under way (a long CPU prefill can take a
// while); past it, it goes on rather than turn a slow exit into a hang of its own.
constexpr auto kBusyWaitLimit = std::chrono::seconds(60);

// The streams work was queued on: each thread's default stream when it first used the
// shim, and the streams shim_new_stream made. Allocated once and never freed, because the
// exit handler reads it after static destructors may have run.
std::mutex& streams_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::vector<mx::Stream>& streams() {
  static auto* v = new std::vector<mx::Stream>();
  return *v;
}
void remember(const mx::Stream& s) {
  std::lock_guard<std::mutex> lock(streams_mutex());
  for (const auto& known : streams())
    if (known == s) return;
  streams().push_back(s);
}

[[noreturn]] void park() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

void quiesce_at_exit() {
  // A forked child inherits this handler but not MLX's threads: nothing there to wait for.
  if (getpid() != g_pid) return;
  t_exit_thread = true;
  g_exiting.store(true);
  const auto deadline = std::chrono::steady_clock::now() + kBusyWaitLimit;
  while (g_busy.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (g_abandoned.load()) return;
  std::vector<mx::Stream> to_drain;
  {
    std::lock_guard<std::mutex> lock(streams_mutex());
    to_drain = streams();
  }
  for (const auto& s : to_drain) {
    try {
      mx::synchronize(s);
    } catch (...) {
      // A stream whose last task failed has nothing left running.
    }
  }
}

}  // namespace

WorkScope::WorkScope(Kind kind) : queues_(kind == Kind::queues) {
  // Only the outermost scope of a thread counts: a call inside a call (a shim function
  // whose body holds its own scope) must not park while its caller is counted as busy,
  // or the exit handler would wait its whole limit for a thread that will never return.
  if (t_depth++ == 0) {
    g_busy.fetch_add(1);
    if (g_exiting.load() && !t_exit_thread) {
      g_busy.fetch_sub(1);
      park();
    }
  }
  if (queues_ && !t_stream_known) {
    t_stream_known = true;
    try {
      remember(mx::default_stream(mx::default_device()));
    } catch (...) {
      // No default stream means nothing can be queued on it either.
    }
  }
}

WorkScope::~WorkScope() {
  if (--t_depth == 0) g_busy.fetch_sub(1);
  if (!queues_) return;
  // Registered after the first call has run, so that MLX's lazily made singletons (the
  // scheduler, the allocator) exist already: exit handlers run in reverse order of
  // registration, so this one runs before their destructors and before the shared
  // libraries' finalizers (OpenBLAS's among them).
  std::call_once(g_registered, [] {
    g_pid = getpid();
    std::atexit(quiesce_at_exit);
  });
}

void track_stream(const mx::Stream& s) { remember(s); }

void abandon_streams() { g_abandoned.store(true); }
bool streams_abandoned() { return g_abandoned.load(); }

}  // namespace shim_exit
