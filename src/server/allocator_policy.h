#pragma once
// The server's malloc policy (glibc): memory a large request took goes back to the system.
//
// A refused 7 MB prompt used to leave ~0.5 GB resident, and 64 HTTP threads (one glibc arena
// each) let that add up. Two measures, measured against decode speed:
// - at most 8 arenas, so what fragmentation keeps is bounded by 8 heaps, not 64;
// - after a request whose body was large, malloc_trim(0) returns the free pages of every arena
//   (the tokenizer's and the JSON parser's working memory, the body buffers).
// A fixed mmap threshold (every block above it its own mapping, returned on free) was tried
// and dropped: the engine allocates per-step buffers (logits, activations), which then cost an
// mmap, page faults and a munmap each step. 16-stream decode on the 1_8b checkpoint: 256 KiB
// threshold ~10 tok/s, 4 MiB 23.9, 6 MiB 29.2, this policy 42.8-56 (while the 7 MB-prompt test
// left +1 MiB with 4 MiB against +26..+80 MiB with this policy). The way to both is an engine
// that reuses its step buffers; until then decode speed wins.
#include <cstddef>

namespace ilm::server {

void set_allocator_policy();
// After a request whose body was at least `bytes` large (a no-op below 1 MiB).
void trim_after_large_request(size_t bytes);

}  // namespace ilm::server
