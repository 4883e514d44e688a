#include "parallel/communicator.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

#ifdef INTERNLM_HAVE_MPI
std::unique_ptr<Communicator> make_mpi_communicator();  // mpi_communicator.cpp
bool mpi_available() { return true; }
#else
bool mpi_available() { return false; }
#endif

void LocalCommunicator::gather(std::span<const float> local, std::span<const int64_t> counts, std::span<float> out,
                               int) {
  if (counts.size() != 1 || static_cast<int64_t>(local.size()) != counts[0] || out.size() < local.size())
    throw Error("gather: counts do not match the buffers");
  if (!local.empty() && out.data() != local.data()) std::memmove(out.data(), local.data(), local.size_bytes());
}

std::unique_ptr<Communicator> make_communicator(int tp) {
  if (tp < 1) throw Error(fmt::format("--tp {}: needs a positive number of ranks", tp));
  if (tp == 1) return std::make_unique<LocalCommunicator>();
#ifdef INTERNLM_HAVE_MPI
  auto comm = make_mpi_communicator();
  if (comm->size() != tp)
    throw Error(fmt::format("--tp {} needs exactly {} MPI ranks, the job has {} (run it as: mpirun -np {} internlm "
                            "... --tp {})",
                            tp, tp, comm->size(), tp, tp));
  return comm;
#else
  throw Error(fmt::format("--tp {}: this internlm was built without MPI support (install libopenmpi-dev, or "
                          "scripts/setup.sh, and rebuild); --tp 1 runs in one process",
                          tp));
#endif
}

double collective_timeout_seconds() {
  const char* env = std::getenv("INTERNLM_TP_TIMEOUT");
  if (env == nullptr || *env == '\0') return 10.0;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  if (end == env || *end != '\0' || !(v > 0))
    throw Error(fmt::format("INTERNLM_TP_TIMEOUT='{}': expected a positive number of seconds", env));
  return v;
}

}  // namespace ilm
