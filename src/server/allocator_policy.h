#pragma once
// The server's malloc policy (glibc): memory a large request took goes back to the system.
//
// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
// multi-megabyte request buffers come from the heap arenas, and 64 HTTP threads mean up to 64
// arenas whose freed memory stays resident: a refused 7 MB prompt used to leave ~0.5 GB behind.
// A fixed threshold (which also turns off the dynamic trim threshold) keeps every block of 256
// KiB or more in its own mapping, returned on free; a cap on arenas bounds what small-block
// fragmentation can keep; trim_after_large_request() returns the free pages inside arenas.
#include <cstddef>

namespace ilm::server {

void set_allocator_policy();
// After a request whose body was at least `bytes` large (a no-op below 1 MiB).
void trim_after_large_request(size_t bytes);

}  // namespace ilm::server
