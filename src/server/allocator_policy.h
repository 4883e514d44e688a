#pragma once
// The server's malloc policy (glibc): memory a large request took goes back to the system.
//
// A refused 7 MB prompt used to leave ~0.5 GB resident, and 64 HTTP threads (one glibc arena
// each) let that add up. Three measures, measured against decode speed:
// - a fixed 1 MiB mmap threshold: every block above it is its own mapping, unmapped on free, so
//   a large body, its JSON tree and its token buffers go back to the system whatever arena they
//   came from. Fixed, glibc's sliding threshold (which rises to the size of the largest block
//   freed, so one big free makes later big blocks heap blocks again) is off;
// - at most 8 arenas, so what fragmentation keeps is bounded by 8 heaps, not 64;
// - after a request whose body was large, malloc_trim(0) returns the free pages of every arena.
// The threshold costs decode nothing because the engine keeps its step buffers (the model's
// per-thread workspace, the attention tile buffers): before that, every step's logits and
// activations were an mmap, page faults and a munmap (16-stream decode on 1_8b: 256 KiB
// threshold ~10 tok/s, 4 MiB 23.9 vs 42.8 without). Now 256 KiB, 1 MiB, 4 MiB and none measure
// 47-49 tok/s alike, and the 7 MB-prompt test leaves -1..+2 MiB (docs/PERFORMANCE.md).
#include <cstddef>

namespace ilm::server {

void set_allocator_policy();
// After a request whose body was at least `bytes` large (a no-op below 1 MiB).
void trim_after_large_request(size_t bytes);

}  // namespace ilm::server
