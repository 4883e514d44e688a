#pragma once
// The ranks of a tensor-parallel job and the few collectives the sharded forward pass needs.
// Every collective is blocking and called by all ranks in the same order. The sum runs in a
// fixed order (rank 0's values + rank 1's + ..., element by element), so a result never depends
// on the transport, the timing or how the job was batched: the same inputs give the same bits
// on every run. A single process is a job of one rank (LocalCommunicator); MpiCommunicator
// (built when CMake finds MPI) runs under mpirun.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace ilm {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank's `data` becomes the element-wise sum over ranks, added in rank order.
  virtual void all_reduce_sum(std::span<float> data) = 0;
  // `data` of rank `root` is copied into every other rank's `data` (same size everywhere).
  virtual void broadcast(std::span<std::byte> data, int root) = 0;
  // Rank r's `local` (counts[r] floats) lands at offset counts[0] + ... + counts[r-1] of
  // `out` on rank `root` (sum of counts floats); `out` is ignored elsewhere.
  virtual void gather(std::span<const float> local, std::span<const int64_t> counts, std::span<float> out,
                      int root) = 0;
  // Returns once every rank has called it; waits at most `timeout_s` seconds (a rank still
  // loading its weights) before ending the job with a message naming the missing rank.
  virtual void barrier(double timeout_s) = 0;

  // Bytes this rank sent to reductions and gathers, and seconds spent in collectives, since
  // the start (for `bench`).
  uint64_t bytes_reduced() const { return bytes_reduced_; }
  double seconds_in_collectives() const { return seconds_; }

 protected:
  uint64_t bytes_reduced_ = 0;
  double seconds_ = 0;
};

// One process: rank 0 of 1; the collectives copy or do nothing.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(std::span<float>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void gather(std::span<const float> local, std::span<const int64_t> counts, std::span<float> out,
              int root) override;
  void barrier(double) override {}
};

// Whether this binary was built with MPI.
bool mpi_available();
// The communicator for `--tp N`: a LocalCommunicator for N = 1; for N > 1 the MPI world
// (initialised here), which must have exactly N ranks. Throws ilm::Error when MPI support was
// not built or the world size differs.
std::unique_ptr<Communicator> make_communicator(int tp);

// Seconds a rank waits for a peer inside a collective before it ends the whole job naming
// that peer: $INTERNLM_TP_TIMEOUT, default 10.
double collective_timeout_seconds();

}  // namespace ilm
