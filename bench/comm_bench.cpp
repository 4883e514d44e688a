// comm_bench: latency and bandwidth of the tensor-parallel all-reduce (issue 15).
//
//   mpirun -np 2 build/comm_bench [--json] [--reps R] [--iters N] [--sizes 16k,64k,256k,1m]
//
// Times the project's own Communicator::all_reduce_sum (parallel/communicator.h: a fixed-order
// reduce-scatter then all-gather from point-to-point messages, the sum the sharded forward pass
// runs twice per layer) for each size, many iterations per repetition, and MPI_Allreduce on the
// same buffer for reference. A repetition's time is the slowest rank's; the figure is the median
// over repetitions (and the fastest). Bandwidth: algbw = bytes / latency; busbw = algbw x
// 2(N-1)/N, the bytes each rank actually sends and receives (NCCL's convention). Then the decode
// step of a 7B model (hidden 4096, 32 layers): 64 sums of 4096 floats = 16 KiB per token, timed
// back to back as one token's worth. Built only when CMake finds MPI.
#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "parallel/communicator.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  bool json = false;
  int reps = 5;
  int64_t iters = 0;  // 0: by size (about 256 MiB reduced per repetition, 200..20000 iterations)
  std::vector<int64_t> sizes = {16 << 10, 64 << 10, 256 << 10, 1 << 20};
};

int64_t parse_size(const std::string& s) {
  if (s.empty()) throw std::runtime_error("empty size");
  int64_t mult = 1;
  std::string num = s;
  const char last = static_cast<char>(std::tolower(static_cast<unsigned char>(s.back())));
  if (last == 'k' || last == 'm') {
    mult = last == 'k' ? 1024 : 1024 * 1024;
    num.pop_back();
  }
  size_t used = 0;
  const long long v = std::stoll(num, &used);
  if (used != num.size() || v <= 0 || v * mult % 4 != 0)
    throw std::runtime_error("--sizes: '" + s + "' is not a positive byte count divisible by 4 (e.g. 16k, 1m)");
  return v * mult;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--json") {
      a.json = true;
    } else if (arg == "--reps") {
      a.reps = std::max(1, std::stoi(value()));
    } else if (arg == "--iters") {
      a.iters = std::max<int64_t>(1, std::stoll(value()));
    } else if (arg == "--sizes") {
      a.sizes.clear();
      const std::string list = value();
      size_t pos = 0;
      while (pos <= list.size()) {
        size_t comma = list.find(',', pos);
        if (comma == std::string::npos) comma = list.size();
        a.sizes.push_back(parse_size(list.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else if (arg == "-h" || arg == "--help") {
      std::printf(
          "usage: mpirun -np N comm_bench [--json] [--reps R] [--iters N] [--sizes 16k,64k,256k,1m]\n"
          "Latency and bandwidth of Communicator::all_reduce_sum (fixed order) and MPI_Allreduce per size,\n"
          "and the 7B decode step's 64 sums of 16 KiB.\n");
      MPI_Finalize();
      std::exit(0);
    } else {
      throw std::runtime_error("unknown argument '" + arg + "' (see --help)");
    }
  }
  return a;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The slowest rank's time of one repetition, on every rank.
double slowest(double local) {
  double out = 0;
  MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

struct Timing {
  double median_us = 0, min_us = 0;
};

Timing summarize(std::vector<double> per_op_s) {
  std::sort(per_op_s.begin(), per_op_s.end());
  const size_t n = per_op_s.size();
  const double median = n % 2 ? per_op_s[n / 2] : (per_op_s[n / 2 - 1] + per_op_s[n / 2]) / 2;
  return {median * 1e6, per_op_s.front() * 1e6};
}

// `ops` calls of `op` per repetition, after one untimed warm-up repetition's worth (capped).
template <class Op>
Timing time_op(int reps, int64_t ops, Op op) {
  for (int64_t i = 0; i < std::min<int64_t>(ops, 200); ++i) op();
  std::vector<double> per_op;
  for (int rep = 0; rep < reps; ++rep) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < ops; ++i) op();
    per_op.push_back(slowest(seconds_since(t0)) / static_cast<double>(ops));
  }
  return summarize(per_op);
}

std::string size_name(int64_t bytes) {
  if (bytes % (1 << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes % (1 << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

int run(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (size < 2) throw std::runtime_error("run it under mpirun with at least 2 ranks: mpirun -np 2 comm_bench");
  // MPI is initialised here: the communicator uses the same world and leaves MPI_Finalize to us.
  const std::unique_ptr<ilm::Communicator> comm = ilm::make_communicator(size);
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int version_len = 0;
  MPI_Get_library_version(version, &version_len);
  std::string mpi_version(version, static_cast<size_t>(version_len));
  if (const size_t nl = mpi_version.find_first_of("\r\n,"); nl != std::string::npos) mpi_version.resize(nl);

  // Correctness first: rank r holds r + (i mod 7); the sum is known exactly.
  {
    std::vector<float> v(4099);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rank) + static_cast<float>(i % 7);
    comm->all_reduce_sum(v);
    for (size_t i = 0; i < v.size(); ++i) {
      const double want = size * (size - 1) / 2.0 + static_cast<double>(size) * static_cast<double>(i % 7);
      if (v[i] != static_cast<float>(want))
        throw std::runtime_error(fmt::format("all_reduce_sum: element {} is {}, want {}", i, v[i], want));
    }
  }

  nlohmann::json results = nlohmann::json::array();
  const double bus = 2.0 * (size - 1) / size;
  if (rank == 0 && !a.json) {
    fmt::print("comm_bench: {} ranks, {}; median of {} repetitions (slowest rank each), fastest in brackets\n", size,
               mpi_version, a.reps);
    fmt::print("{:>8} {:>8} {:>7}  {:>22} {:>9} {:>9}  {:>13} {:>10}\n", "size", "floats", "iters",
               "all_reduce_sum us", "algbw", "busbw", "MPI_Allreduce", "sent/op");
  }
  for (const int64_t bytes : a.sizes) {
    const int64_t n = bytes / 4;
    const int64_t iters = a.iters ? a.iters : std::clamp<int64_t>((int64_t{256} << 20) / bytes, 200, 20000);
    std::vector<float> buf(static_cast<size_t>(n), 0.0f), out(static_cast<size_t>(n));  // zeros stay zeros
    const uint64_t sent0 = comm->bytes_reduced();
    const Timing ours = time_op(a.reps, iters, [&] { comm->all_reduce_sum(buf); });
    const double ops_done = static_cast<double>(std::min<int64_t>(iters, 200) + iters * a.reps);
    const double sent_per_op = static_cast<double>(comm->bytes_reduced() - sent0) / ops_done;
    const Timing ref = time_op(a.reps, iters, [&] {
      MPI_Allreduce(buf.data(), out.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    });
    const double algbw = static_cast<double>(bytes) / (ours.median_us * 1e-6) / 1e9;
    results.push_back({{"bytes", bytes},
                       {"floats", n},
                       {"iters", iters},
                       {"latency_us", {{"median", ours.median_us}, {"min", ours.min_us}}},
                       {"algbw_gbps", algbw},
                       {"busbw_gbps", algbw * bus},
                       {"bytes_sent_per_op", sent_per_op},
                       {"mpi_allreduce_latency_us", {{"median", ref.median_us}, {"min", ref.min_us}}}});
    if (rank == 0 && !a.json)
      fmt::print("{:>8} {:>8} {:>7}  {:>11.1f} ({:>8.1f}) {:>5.2f} GB/s {:>4.2f} GB/s  {:>10.1f} us {:>7.0f} B\n",
                 size_name(bytes), n, iters, ours.median_us, ours.min_us, algbw, algbw * bus, ref.median_us,
                 sent_per_op);
  }

  // One 7B decode token's sums: 2 per layer x 32 layers, 4096 floats each, back to back.
  constexpr int kLayers = 32, kHidden = 4096;
  std::vector<float> h(kHidden, 0.0f);
  const int64_t tokens = a.iters ? std::max<int64_t>(1, a.iters / (2 * kLayers)) : 500;
  const Timing token = time_op(a.reps, tokens, [&] {
    for (int i = 0; i < 2 * kLayers; ++i) comm->all_reduce_sum(h);
  });
  nlohmann::json decode = {{"layers", kLayers},
                           {"hidden", kHidden},
                           {"reductions_per_token", 2 * kLayers},
                           {"bytes_per_reduction", kHidden * 4},
                           {"tokens", tokens},
                           {"us_per_token", {{"median", token.median_us}, {"min", token.min_us}}},
                           {"us_per_reduction", token.median_us / (2 * kLayers)},
                           {"max_tokens_per_s_from_communication", 1e6 / token.median_us}};
  if (rank == 0) {
    if (a.json) {
      nlohmann::json j = {{"ranks", size},
                          {"mpi", mpi_version},
                          {"reps", a.reps},
                          {"results", results},
                          {"decode_7b", decode}};
      fmt::print("{}\n", j.dump(2));
    } else {
      fmt::print("7b decode step: {} sums of {} floats (16 KiB) = {:.1f} us per token ({:.1f} fastest), {:.2f} us per "
                 "sum: communication alone caps decode at {:.0f} tok/s\n",
                 2 * kLayers, kHidden, token.median_us, token.min_us, token.median_us / (2 * kLayers),
                 1e6 / token.median_us);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rc = 0;
  try {
    rc = run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_bench: error: %s\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return rc;
}
