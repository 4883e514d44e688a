// The MPI communicator (compiled only when CMake finds MPI). Every collective is built from
// non-blocking point-to-point messages, for two reasons: the reduction order is ours (MPI's
// own reductions may add in any order), and each wait polls against a deadline, so a rank
// whose peer died or hangs ends the job within the timeout with a message naming that peer
// instead of waiting forever.
#include <fmt/format.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/error.h"
#include "parallel/communicator.h"

namespace ilm {
namespace {

using Clock = std::chrono::steady_clock;

enum Tag : int { kReduceScatter = 1, kAllGather = 2, kBroadcast = 3, kGather = 4, kBarrierIn = 5, kBarrierOut = 6 };

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      // SERIALIZED, not FUNNELED: under `serve --tp` rank 0's collectives run on the engine
      // thread, not the thread that initialised MPI (one thread at a time, never two at once).
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      if (provided < MPI_THREAD_SERIALIZED)
        throw Error(fmt::format("MPI provides thread level {} < MPI_THREAD_SERIALIZED, which --tp needs", provided));
      owns_init_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    timeout_s_ = collective_timeout_seconds();
  }
  ~MpiCommunicator() override {
    if (owns_init_) MPI_Finalize();
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // Reduce-scatter then all-gather: rank r sums chunk r of every rank's buffer, adding the
  // contributions in rank order (rank 0 + rank 1 + ...), and sends the sum to everyone.
  void all_reduce_sum(std::span<float> data) override {
    const auto t0 = Clock::now();
    const int64_t n = static_cast<int64_t>(data.size());
    auto begin = [&](int r) { return n * r / size_; };
    const int64_t mine0 = begin(rank_), mine = begin(rank_ + 1) - mine0;
    scratch_.resize(static_cast<size_t>(mine * size_));
    Requests rq;
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      rq.recv(scratch_.data() + j * mine, mine, MPI_FLOAT, j, kReduceScatter);
      rq.send(data.data() + begin(j), begin(j + 1) - begin(j), MPI_FLOAT, j, kReduceScatter);
    }
    wait(rq, "partial sums");
    std::memcpy(scratch_.data() + rank_ * mine, data.data() + mine0, static_cast<size_t>(mine) * sizeof(float));
    float* out = data.data() + mine0;
    for (int64_t i = 0; i < mine; ++i) {
      float acc = scratch_[static_cast<size_t>(i)];
      for (int j = 1; j < size_; ++j) acc += scratch_[static_cast<size_t>(j * mine + i)];
      out[i] = acc;
    }
    Requests rq2;
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      rq2.recv(data.data() + begin(j), begin(j + 1) - begin(j), MPI_FLOAT, j, kAllGather);
      rq2.send(out, mine, MPI_FLOAT, j, kAllGather);
    }
    wait(rq2, "reduced sums");
    bytes_reduced_ += static_cast<uint64_t>(n - mine) * sizeof(float) * 2;
    seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void broadcast(std::span<std::byte> data, int root) override {
    const auto t0 = Clock::now();
    Requests rq;
    const int64_t n = static_cast<int64_t>(data.size());
    if (rank_ == root) {
      for (int j = 0; j < size_; ++j)
        if (j != root) rq.send(data.data(), n, MPI_BYTE, j, kBroadcast);
    } else {
      rq.recv(data.data(), n, MPI_BYTE, root, kBroadcast);
    }
    wait(rq, "broadcast data");
    seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void gather(std::span<const float> local, std::span<const int64_t> counts, std::span<float> out,
              int root) override {
    const auto t0 = Clock::now();
    if (static_cast<int>(counts.size()) != size_ || static_cast<int64_t>(local.size()) != counts[static_cast<size_t>(rank_)])
      throw Error("gather: counts do not match the ranks and buffers");
    Requests rq;
    if (rank_ == root) {
      int64_t offset = 0;
      for (int j = 0; j < size_; ++j) {
        const int64_t c = counts[static_cast<size_t>(j)];
        if (offset + c > static_cast<int64_t>(out.size())) throw Error("gather: output buffer too small");
        if (j == rank_)
          std::memmove(out.data() + offset, local.data(), local.size_bytes());
        else
          rq.recv(out.data() + offset, c, MPI_FLOAT, j, kGather);
        offset += c;
      }
    } else {
      rq.send(local.data(), static_cast<int64_t>(local.size()), MPI_FLOAT, root, kGather);
      bytes_reduced_ += local.size_bytes();
    }
    wait(rq, "logits");
    seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // Everyone reports to rank 0, which answers everyone: rank 0 can name a missing rank.
  void barrier(double timeout_s) override {
    char in = 0, out = 1;
    std::vector<char> got(static_cast<size_t>(size_));
    Requests rq;
    if (rank_ == 0) {
      for (int j = 1; j < size_; ++j) rq.recv(&got[static_cast<size_t>(j)], 1, MPI_BYTE, j, kBarrierIn);
    } else {
      rq.send(&in, 1, MPI_BYTE, 0, kBarrierIn);
    }
    wait(rq, "a sign of readiness", timeout_s);
    Requests rq2;
    if (rank_ == 0) {
      for (int j = 1; j < size_; ++j) rq2.send(&out, 1, MPI_BYTE, j, kBarrierOut);
    } else {
      rq2.recv(&got[0], 1, MPI_BYTE, 0, kBarrierOut);
    }
    wait(rq2, "a sign of readiness", timeout_s);
  }

 private:
  struct Requests {
    std::vector<MPI_Request> reqs;
    std::vector<int> peers;
    void recv(void* p, int64_t n, MPI_Datatype t, int peer, int tag) {
      reqs.emplace_back();
      peers.push_back(peer);
      MPI_Irecv(p, static_cast<int>(n), t, peer, tag, MPI_COMM_WORLD, &reqs.back());
    }
    void send(const void* p, int64_t n, MPI_Datatype t, int peer, int tag) {
      reqs.emplace_back();
      peers.push_back(peer);
      MPI_Isend(p, static_cast<int>(n), t, peer, tag, MPI_COMM_WORLD, &reqs.back());
    }
  };

  // Polls until every request completed; past the deadline, names the first peer still
  // missing and aborts the whole job (MPI_Abort ends every rank, and mpirun exits non-zero).
  void wait(Requests& rq, const char* what, double timeout_s = 0) {
    if (rq.reqs.empty()) return;
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(timeout_s > 0 ? timeout_s : timeout_s_));
    const auto start = Clock::now();
    for (unsigned spins = 0;; ++spins) {
      int done = 0;
      MPI_Testall(static_cast<int>(rq.reqs.size()), rq.reqs.data(), &done, MPI_STATUSES_IGNORE);
      if (done) return;
      if ((spins & 255) == 255 && Clock::now() > deadline) {
        int missing = -1;
        for (size_t i = 0; i < rq.reqs.size() && missing < 0; ++i) {
          int ok = 0;
          MPI_Test(&rq.reqs[i], &ok, MPI_STATUS_IGNORE);
          if (!ok) missing = rq.peers[i];
        }
        std::fprintf(stderr,
                     "error: tensor parallel rank %d: no %s from rank %d within %.0f s (rank %d died or hangs); "
                     "ending the job\n",
                     rank_, what, missing, timeout_s > 0 ? timeout_s : timeout_s_, missing);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      // Inside a step the peer answers within microseconds: poll (yielding, as ranks may share
      // cores under --oversubscribe). After 10 ms the peer is idle (a follower waiting for the
      // next request's plan): sleep between polls, so an idle rank does not hold a core.
      if ((spins & 63) == 63) {
        if (Clock::now() - start > std::chrono::milliseconds(10))
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        else
          std::this_thread::yield();
      }
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_init_ = false;
  double timeout_s_ = 10;
  std::vector<float> scratch_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace ilm
