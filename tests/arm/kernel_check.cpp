// Standalone check of the aarch64 NEON kernels (backend/cpu/kernels_neon.cpp) against the
// portable ones (kernels_generic.cpp). No gtest: tools/check_arm.sh cross-compiles this file
// with the kernel sources (aarch64-linux-gnu-g++ -static) and runs it under qemu-aarch64, so
// the NEON code is tested on machines without ARM hardware. Exit status 0 when every check
// passes, 1 otherwise.
//
// Checked: matmul (F32 / F16 / BF16 weights) and matmul_quant (int8, int4; groups 32, 128)
// against generic within max|a - b| / max|b| <= 1e-5, for several T (1 .. 70, so both
// blocking paths and several token blocks), K with and without tails and K slicing, strided
// x / y, row sub-ranges; that rows outside [r0, r1) and columns past ldy are never written
// and x past K never read (NaN there); that each (token, row) result is bit-identical whatever
// T, the other tokens of the batch and the row split; dot, read_sum, fma_loop;
// and that the cpu backend selects "neon" on aarch64.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cpu/kernels.h"
#include "common/dtype.h"

namespace {

using ilm::DType;
using ilm::cpu::Kernels;

int g_checks = 0;
int g_failures = 0;

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

std::mt19937 g_rng(20240611u);

float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

const float kNaN = std::nanf("");
const float kSentinel = -12345.5f;  // y entries a kernel must not write

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

std::string dtype_str(DType t) { return std::string(ilm::dtype_name(t)); }

// x: T rows of ldx floats, columns [K, ldx) NaN (a kernel must not read them).
std::vector<float> random_x(int64_t T, int64_t K, int64_t ldx) {
  std::vector<float> x(static_cast<size_t>(T * ldx), kNaN);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) x[static_cast<size_t>(t * ldx + k)] = uniform(-1.0f, 1.0f);
  return x;
}

// A matmul-like call: computes rows [r0, r1) of T tokens into y (T x ldy).
struct Call {
  virtual ~Call() = default;
  virtual void run(const Kernels& k, const float* x, int64_t ldx, int64_t T, int64_t r0, int64_t r1, float* y,
                   int64_t ldy) const = 0;
};

struct DenseCall : Call {
  DType wt;
  int64_t K;
  std::vector<uint8_t> w;  // R * K elements of wt, then a NaN guard
  DenseCall(DType t, int64_t rows, int64_t k) : wt(t), K(k) {
    const size_t n = static_cast<size_t>(rows * K);
    const size_t guard = 16;
    w.resize((n + guard) * ilm::dtype_size(wt));
    for (size_t i = 0; i < n + guard; ++i) {
      const float v = i < n ? uniform(-1.0f, 1.0f) : kNaN;
      if (wt == DType::F32) {
        std::memcpy(w.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = wt == DType::BF16 ? ilm::f32_to_bf16(v) : ilm::f32_to_f16(v);
        std::memcpy(w.data() + 2 * i, &h, 2);
      }
    }
  }
  void run(const Kernels& k, const float* x, int64_t ldx, int64_t T, int64_t r0, int64_t r1, float* y,
           int64_t ldy) const override {
    k.matmul(x, ldx, T, w.data(), wt, K, r0, r1, y, ldy);
  }
};

struct QuantCall : Call {
  int bits;
  int64_t K, group;
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales;
  QuantCall(int b, int64_t rows, int64_t k, int64_t g) : bits(b), K(k), group(g) {
    data.resize(static_cast<size_t>(rows * K * bits / 8));
    for (auto& v : data) {
      if (bits == 8) {
        v = static_cast<uint8_t>(static_cast<int8_t>(std::uniform_int_distribution<int>(-127, 127)(g_rng)));
      } else {
        v = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(g_rng));
      }
    }
    scales.resize(static_cast<size_t>(rows * K / group));
    for (auto& s : scales) s = ilm::f32_to_f16(uniform(5e-4f, 2e-2f) * (uniform(0.0f, 1.0f) < 0.5f ? -1.0f : 1.0f));
  }
  void run(const Kernels& k, const float* x, int64_t ldx, int64_t T, int64_t r0, int64_t r1, float* y,
           int64_t ldy) const override {
    k.matmul_quant(x, ldx, T, data.data(), scales.data(), bits, K, group, r0, r1, y, ldy);
  }
};

// Runs `c` with kernels `k` for T tokens of x, rows [r0, r1); y starts as sentinels.
std::vector<float> eval(const Call& c, const Kernels& k, const std::vector<float>& x, int64_t ldx, int64_t T,
                        int64_t r0, int64_t r1, int64_t ldy) {
  std::vector<float> y(static_cast<size_t>(T * ldy), kSentinel);
  c.run(k, x.data(), ldx, T, r0, r1, y.data(), ldy);
  return y;
}

// Every check of one weight matrix (R rows of K) for each T in Ts; returns the largest
// relative error against generic.
double check_matrix(const std::string& name, const Call& c, const Kernels& gen, const Kernels& neon, int64_t R,
                    int64_t K, const std::vector<int64_t>& Ts) {
  const int64_t ldx = K + 5, ldy = R + 3;
  double worst = 0;
  for (const int64_t T : Ts) {
    const std::string at = name + " T=" + std::to_string(T);
    const std::vector<float> x = random_x(T, K, ldx);
    const std::vector<float> want = eval(c, gen, x, ldx, T, 0, R, ldy);
    const std::vector<float> got = eval(c, neon, x, ldx, T, 0, R, ldy);

    // Accuracy against generic, and nothing written past column R.
    double max_diff = 0, max_ref = 0;
    bool finite = true, pad_ok = true;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t r = 0; r < R; ++r) {
        const float a = got[static_cast<size_t>(t * ldy + r)], b = want[static_cast<size_t>(t * ldy + r)];
        finite = finite && std::isfinite(a) && std::isfinite(b);
        max_diff = std::fmax(max_diff, std::fabs(static_cast<double>(a) - b));
        max_ref = std::fmax(max_ref, std::fabs(static_cast<double>(b)));
      }
      for (int64_t r = R; r < ldy; ++r) pad_ok = pad_ok && same_bits(got[static_cast<size_t>(t * ldy + r)], kSentinel);
    }
    const double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
    worst = std::fmax(worst, rel);
    expect(finite, at + ": non-finite output (x past K or weights past the matrix read?)");
    expect(rel <= 1e-5, at + ": max|neon - generic| / max|generic| = " + std::to_string(rel) + " > 1e-5");
    expect(pad_ok, at + ": wrote past the R output columns");

    // A row sub-range writes exactly its rows, with the same bits as the full call.
    {
      const int64_t r0 = R > 8 ? 5 : 1, r1 = R > 8 ? R - 3 : R;
      const std::vector<float> sub = eval(c, neon, x, ldx, T, r0, r1, ldy);
      bool ok = true;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 0; r < ldy; ++r) {
          const size_t i = static_cast<size_t>(t * ldy + r);
          ok = ok && same_bits(sub[i], r >= r0 && r < r1 ? got[i] : kSentinel);
        }
      expect(ok, at + ": rows [" + std::to_string(r0) + ", " + std::to_string(r1) +
                     ") differ from the full call or other rows were written");
    }
    // A thread split into uneven row ranges gives the same bits.
    {
      std::vector<float> split(static_cast<size_t>(T * ldy), kSentinel);
      const int64_t cuts[] = {0, R / 5, R / 5 + 1, R / 2 + 3 < R ? R / 2 + 3 : R, R};
      for (int i = 0; i + 1 < 5; ++i)
        if (cuts[i] < cuts[i + 1]) c.run(neon, x.data(), ldx, T, cuts[i], cuts[i + 1], split.data(), ldy);
      expect(std::memcmp(split.data(), got.data(), split.size() * sizeof(float)) == 0,
             at + ": a split of the rows over threads changes bits");
    }
    // Each checked token alone (T = 1) and inside a different batch of 7 gives the same bits.
    const int64_t probe[] = {0, T / 2, T - 1};
    for (const int64_t t : probe) {
      std::vector<float> one(x.begin() + t * ldx, x.begin() + (t + 1) * ldx);
      const std::vector<float> y1 = eval(c, neon, one, ldx, 1, 0, R, ldy);
      std::vector<float> x7 = random_x(7, K, ldx);
      std::copy(one.begin(), one.end(), x7.begin() + 3 * ldx);
      const std::vector<float> y7 = eval(c, neon, x7, ldx, 7, 0, R, ldy);
      bool ok1 = true, ok7 = true;
      for (int64_t r = 0; r < R; ++r) {
        const float full = got[static_cast<size_t>(t * ldy + r)];
        ok1 = ok1 && same_bits(y1[static_cast<size_t>(r)], full);
        ok7 = ok7 && same_bits(y7[static_cast<size_t>(3 * ldy + r)], full);
      }
      expect(ok1, at + ": token " + std::to_string(t) + " alone (T=1) differs in bits from the batch");
      expect(ok7, at + ": token " + std::to_string(t) + " in another batch (T=7) differs in bits");
    }
  }
  return worst;
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (const int64_t i : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(i);
  }
  return s;
}

void check_matmul(const Kernels& gen, const Kernels& neon) {
  const int64_t R = 37;  // 8-row blocks, a 4-row block and single rows
  for (const DType wt : {DType::F32, DType::F16, DType::BF16}) {
    // 4096 / 4099: K slicing (4099: a 3-column last slice); 2047: no slicing, tail 3.
    for (const int64_t K : {int64_t{4096}, int64_t{4099}, int64_t{2047}, int64_t{100}, int64_t{37}, int64_t{3}}) {
      std::vector<int64_t> Ts = {1, 2, 3, 5, 17};
      if (K == 4096) Ts.push_back(70);  // two token blocks on the blocked path
      const int failures = g_failures;
      const DenseCall c(wt, R, K);
      const std::string name = "matmul " + dtype_str(wt) + " K=" + std::to_string(K);
      const double worst = check_matrix(name, c, gen, neon, R, K, Ts);
      std::printf("%-6s %-30s T=%-16s max rel err %.2e\n", g_failures == failures ? "ok" : "FAILED", name.c_str(),
                  join(Ts).c_str(), worst);
    }
  }
}

void check_matmul_quant(const Kernels& gen, const Kernels& neon) {
  const int64_t R = 37;
  for (const int bits : {8, 4}) {
    for (const int64_t group : {int64_t{32}, int64_t{128}}) {
      std::vector<int64_t> Ks = {4096, 33 * group, 3 * group};
      if (group == 32) Ks.push_back(2080);  // sliced 1024 + 1024 + 32
      for (const int64_t K : Ks) {
        std::vector<int64_t> Ts = {1, 2, 3, 5, 17};
        if (K == 4096) Ts.push_back(70);
        const int failures = g_failures;
        const QuantCall c(bits, R, K, group);
        const std::string name = "matmul_quant int" + std::to_string(bits) + ":" + std::to_string(group) +
                                 " K=" + std::to_string(K);
        const double worst = check_matrix(name, c, gen, neon, R, K, Ts);
        std::printf("%-6s %-30s T=%-16s max rel err %.2e\n", g_failures == failures ? "ok" : "FAILED", name.c_str(),
                    join(Ts).c_str(), worst);
      }
    }
  }
}

const std::vector<int64_t> kLengths = {0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 100, 4096, 4099};

void check_vector_ops(const Kernels& gen, const Kernels& neon) {
  const int failures = g_failures;
  double worst_dot = 0, worst_sum = 0;
  for (const int64_t n : kLengths) {
    const std::string at = " n=" + std::to_string(n);
    std::vector<float> a(static_cast<size_t>(n) + 1), b(static_cast<size_t>(n) + 1);
    double mag = 0, sum_mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      a[static_cast<size_t>(i)] = uniform(-1.0f, 1.0f);
      b[static_cast<size_t>(i)] = uniform(-1.0f, 1.0f);
      mag += std::fabs(static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)]);
      sum_mag += std::fabs(static_cast<double>(a[static_cast<size_t>(i)]));
    }
    a[static_cast<size_t>(n)] = b[static_cast<size_t>(n)] = kNaN;  // never read

    const double dd = std::fabs(static_cast<double>(neon.dot(a.data(), b.data(), n)) - gen.dot(a.data(), b.data(), n));
    const double dot_err = mag > 0 ? dd / mag : dd;
    worst_dot = std::fmax(worst_dot, dot_err);
    expect(dot_err <= 1e-5, "dot" + at + ": error / sum|a*b| = " + std::to_string(dot_err));

    const double ds = std::fabs(static_cast<double>(neon.read_sum(a.data(), n)) - gen.read_sum(a.data(), n));
    const double sum_err = sum_mag > 0 ? ds / sum_mag : ds;
    worst_sum = std::fmax(worst_sum, sum_err);
    expect(sum_err <= 1e-5, "read_sum" + at + ": error / sum|p| = " + std::to_string(sum_err));

  }
  std::printf("%-6s dot / read_sum, n=%s: max rel err %.2e / %.2e\n", g_failures == failures ? "ok" : "FAILED",
              join(kLengths).c_str(), worst_dot, worst_sum);

  // fma_loop: a bandwidth-free FMA probe; deterministic, finite, and its flop count sane.
  const int before = g_failures;
  const float f1 = neon.fma_loop(1000), f2 = neon.fma_loop(1000);
  expect(std::isfinite(f1) && f1 > 0 && same_bits(f1, f2), "fma_loop(1000) = " + std::to_string(f1));
  expect(neon.fma_loop_flops_per_iter > 0 && neon.fma_loop_flops_per_iter % 8 == 0,
         "fma_loop_flops_per_iter = " + std::to_string(neon.fma_loop_flops_per_iter) + " (4 lanes x 2 x chains)");
  std::printf("%-6s fma_loop(1000) = %.6f, %lld flops per iteration\n", g_failures == before ? "ok" : "FAILED",
              static_cast<double>(f1), static_cast<long long>(neon.fma_loop_flops_per_iter));
}

}  // namespace

int main() {
#if !defined(__aarch64__)
  std::printf("kernel_check: built for a non-aarch64 target; the NEON kernels are aarch64-only\n");
  return 1;
#else
  const Kernels* neon = ilm::cpu::kernels_for("neon");
  const Kernels* gen = ilm::cpu::kernels_for("generic");
  expect(neon != nullptr && neon->isa == "neon", "kernels_for(\"neon\") returns the neon table");
  expect(gen != nullptr && gen->isa == "generic", "kernels_for(\"generic\") returns the generic table");
  if (!neon || !gen) {
    std::printf("FAILED: kernel tables missing\n");
    return 1;
  }
  expect(neon->matmul && neon->matmul_quant && neon->dot && neon->read_sum && neon->fma_loop && neon->gemm &&
             neon->exp && neon->transpose && neon->widen,
         "every kernel of the neon table is set");

  // Selection: "neon" is the best exact kernel set on aarch64, ahead of "generic".
  const std::vector<std::string_view> isas = ilm::cpu::supported_isas();
  std::string list;
  for (const auto s : isas) {
    if (!list.empty()) list += ',';
    list += s;
  }
  expect(!isas.empty() && isas.front() == "neon", "supported_isas() starts with neon: " + list);
  expect(isas.size() >= 2 && isas.back() == "generic", "supported_isas() ends with generic: " + list);
  expect(ilm::cpu::best_kernels().isa == "neon", "best_kernels() is " + std::string(ilm::cpu::best_kernels().isa));
  std::printf("%-6s supported_isas() = %s, best_kernels() = %s\n", g_failures == 0 ? "ok" : "FAILED", list.c_str(),
              std::string(ilm::cpu::best_kernels().isa).c_str());

  check_matmul(*gen, *neon);
  check_matmul_quant(*gen, *neon);
  check_vector_ops(*gen, *neon);

  std::printf("%s: %d checks, %d failed\n", g_failures == 0 ? "PASS" : "FAIL", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
#endif
}
