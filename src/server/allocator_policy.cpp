#include "server/allocator_policy.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ilm::server {

void set_allocator_policy() {
#if defined(__GLIBC__)
  mallopt(M_ARENA_MAX, 8);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);  // also turns off glibc's sliding threshold
#endif
}

void trim_after_large_request(size_t bytes) {
#if defined(__GLIBC__)
  if (bytes >= (1u << 20)) malloc_trim(0);
#else
  (void)bytes;
#endif
}

}  // namespace ilm::server
