#pragma once
// A persistent pool of worker threads for data-parallel loops. Workers are created once and
// sleep between jobs, so the per-call cost is a wake-up, not a thread spawn.
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ilm {

class ThreadPool {
 public:
  // n_threads counts the calling thread; 0 means one per hardware thread.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint chunks that cover [0, n); returns when all are done.
  // Chunks are contiguous and of near-equal size, one per thread, so the split (and with it
  // every floating-point result) depends only on n and the thread count. An exception thrown
  // by fn (on any thread) is rethrown here after every chunk has finished. Calls from several
  // threads (e.g. the serving engine and a test) run one after another; fn must not call
  // parallel_for on the same pool.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // held for a whole parallel_for
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;  // first exception thrown by a worker in the current job
};

}  // namespace ilm
