// The safetensors header parser on arbitrary bytes: either a header whose every tensor lies
// inside the file, or an ilm::Error.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.h"
#include "fuzz_common.h"
#include "common/dtype.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const ilm::SafetensorsHeader h = ilm::parse_safetensors(file, "fuzz.safetensors");
    for (const auto& t : h.tensors)
      if (t.begin > t.end || h.data_offset + t.end > size || t.nbytes() != t.numel() * ilm::dtype_size(t.dtype))
        ilm::fuzz::violated("an accepted tensor lies outside the file or disagrees with its shape");
  } catch (const ilm::Error&) {
  }
  return 0;
}
