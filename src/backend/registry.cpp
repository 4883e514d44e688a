#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/ref/ref_backend.h"
#include "common/error.h"

namespace ilm {

std::vector<std::string> backend_names() { return {"cpu", "ref"}; }

std::unique_ptr<Backend> make_backend(std::string_view name, int threads, Precision precision) {
  if (name == "ref") return std::make_unique<RefBackend>(threads);
  if (name == "cpu") return std::make_unique<CpuBackend>(threads, precision);
  throw Error(fmt::format("unknown backend '{}' (available: {})", name,
                          fmt::join(backend_names(), ", ")));
}

}  // namespace ilm
