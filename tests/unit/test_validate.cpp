// `internlm validate` building blocks: settings file, verdict logic, logits and operator
// comparisons, the fault-injecting backend, prompt set parsing, subprocesses, SVG charts and the
// report renderers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <set>

#include "backend/backend.h"
#include "common/error.h"
#include "test_util.h"
#include "validate/fault_inject.h"
#include "validate/operator_check.h"
#include "validate/precision.h"
#include "validate/prompts.h"
#include "validate/report.h"
#include "validate/subprocess.h"
#include "validate/svg_charts.h"
#include "validate/thresholds.h"
#include "validate/validate.h"

namespace ilm::validate {
namespace {

TEST(ValidateThresholds, DefaultsAndEveryKeyDocumentedInDefaultsToml) {
  Thresholds t;
  EXPECT_DOUBLE_EQ(t.get("precision.max_rel_error"), 1e-3);
  EXPECT_EQ(t.list("serving.concurrency"), (std::vector<double>{1, 16}));
  const std::string toml = Thresholds::defaults_toml();
  for (const auto& d : Thresholds::defs()) {
    const auto dot = d.key.find('.');
    EXPECT_NE(toml.find(d.key.substr(dot + 1) + " = "), std::string::npos) << d.key;
    EXPECT_FALSE(d.help.empty()) << d.key;
  }
  // The printed defaults load back unchanged.
  Thresholds u;
  u.load_text(toml, "defaults.toml");
  EXPECT_EQ(u.to_json().dump(), [&] {
    auto j = t.to_json();
    for (auto& [k, v] : j.items()) v["origin"] = u.to_json()[k]["origin"];
    return j.dump();
  }());
}

TEST(ValidateThresholds, ParsesSectionsListsBooleansAndComments) {
  Thresholds t;
  t.load_text("# comment\n[precision]\nmax_rel_error = 2e-3  # trailing\n\n[sweep]\nquick_lengths = [512, 1_024,]\n"
              "[inference]\nrequire_deterministic = false\n",
              "v.toml");
  EXPECT_DOUBLE_EQ(t.get("precision.max_rel_error"), 2e-3);
  EXPECT_EQ(t.list("sweep.quick_lengths"), (std::vector<double>{512, 1024}));
  EXPECT_DOUBLE_EQ(t.get("inference.require_deterministic"), 0);
  EXPECT_EQ(t.to_json()["precision.max_rel_error"]["origin"], "v.toml:3");
  EXPECT_EQ(t.to_json()["precision.max_mean_kl"]["origin"], "default");
  t.load_text("\"precision.max_mean_kl\" = 1", "dotted.toml");  // a dotted key without a section
  EXPECT_DOUBLE_EQ(t.get("precision.max_mean_kl"), 1);
  t.load_text("precision.max_mean_kl = 2\noperators.add_rel_tol = 3e-6\n", "dotted.toml");  // TOML dotted keys
  EXPECT_DOUBLE_EQ(t.get("precision.max_mean_kl"), 2);
  EXPECT_DOUBLE_EQ(t.get("operators.add_rel_tol"), 3e-6);
  EXPECT_EQ(t.to_json()["operators.add_rel_tol"]["origin"], "dotted.toml:2");
}

TEST(ValidateThresholds, ErrorsNameFileLineAndKey) {
  auto err = [](const std::string& text) {
    try {
      Thresholds t;
      t.load_text(text, "cfg.toml");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("[precision]\nnope = 1\n").find("cfg.toml:2: unknown setting 'precision.nope'"), std::string::npos);
  // TOML syntax errors (toml++) name the file, line and column.
  EXPECT_NE(err("[precision]\nmax_rel_error 1\n").find("cfg.toml:2:15: "), std::string::npos)
      << err("[precision]\nmax_rel_error 1\n");
  EXPECT_NE(err("[precision\n").find("cfg.toml:1:"), std::string::npos);
  EXPECT_NE(err("[precision]\nmax_rel_error = abc\n").find("cfg.toml:2:"), std::string::npos);
  EXPECT_NE(err("[sweep]\nquick_lengths = [1, 2\n").find("cfg.toml:2:"), std::string::npos);
  EXPECT_NE(err("[precision]\nmax_rel_error = 1\nmax_rel_error = 2\n").find("cfg.toml:3:"), std::string::npos);
  // Well-formed TOML, wrong for a setting: file and line.
  EXPECT_NE(err("[precision]\nmax_rel_error = \"x\"\n").find("cfg.toml:2: 'precision.max_rel_error': expected a number"),
            std::string::npos);
  EXPECT_NE(err("[sweep]\nquick_lengths = [1, \"2\"]\n").find("every item must be a number"), std::string::npos);
  EXPECT_NE(err("[precision]\nmax_rel_error = [1, 2]\n").find("takes a single number"), std::string::npos);
  EXPECT_NE(err("[precision]\nmax_rel_error = -1\n").find("must not be negative"), std::string::npos);
  EXPECT_NE(err("[precision]\nmax_rel_error = nan\n").find("not a finite number"), std::string::npos);
  EXPECT_THROW(Thresholds().get("no.such"), Error);
  EXPECT_THROW(Thresholds().get("serving.concurrency"), Error);  // a list
}

TEST(ValidateReport, StageStatusAndVerdict) {
  StageResult s;
  s.id = "x";
  s.title = "X";
  s.expect(true, "x.a", "a", "ok");
  Check info;
  info.id = "x.b";
  info.name = "b";
  info.status = Status::Info;
  s.add(info);
  s.finish();
  EXPECT_EQ(s.status, Status::Pass);
  EXPECT_NE(s.summary.find("1 passed"), std::string::npos);
  s.expect(false, "x.c", "c", "broke: 3 > 2");
  s.finish();
  EXPECT_EQ(s.status, Status::Fail);
  EXPECT_NE(s.summary.find("first failure: c: broke: 3 > 2"), std::string::npos);

  StageResult skipped;
  skipped.id = "y";
  skipped.title = "Y";
  skipped.skip("no model");
  EXPECT_EQ(skipped.status, Status::Skip);
  EXPECT_EQ(skipped.checks.size(), 1u);

  StageResult warn;
  warn.id = "w";
  Check w;
  w.id = "w.a";
  w.status = Status::Warn;
  warn.add(w);
  warn.finish();
  EXPECT_EQ(warn.status, Status::Warn);

  StageResult ok;
  ok.expect(true, "o", "o", "");
  ok.finish();
  EXPECT_EQ(overall_verdict({ok, skipped}), Status::Pass);
  EXPECT_EQ(overall_verdict({ok, warn}), Status::Warn);
  EXPECT_EQ(overall_verdict({ok, warn, s}), Status::Fail);
  EXPECT_EQ(overall_verdict({skipped}), Status::Fail);  // nothing ran: not a pass
  EXPECT_EQ(parse_status("info"), Status::Info);
  EXPECT_THROW(parse_status("bad"), Error);
  const auto j = stage_json(s);
  EXPECT_EQ(j["status"], "fail");
  EXPECT_EQ(j["checks"][2]["detail"], "broke: 3 > 2");
}

TEST(ValidatePrecision, CompareRowMeasuresErrorKlAndNearTies) {
  const std::vector<float> ref = {1.0f, 3.0f, 2.0f, -1.0f};
  auto same = compare_row(ref, ref, 1e-3);
  EXPECT_EQ(same.max_abs, 0);
  EXPECT_EQ(same.rel, 0);
  EXPECT_NEAR(same.kl, 0, 1e-12);
  EXPECT_TRUE(same.top1_agree);

  std::vector<float> moved = ref;
  moved[0] += 0.3f;
  auto d = compare_row(moved, ref, 1e-3);
  EXPECT_NEAR(d.max_abs, 0.3, 1e-6);
  EXPECT_NEAR(d.rel, 0.1, 1e-6);
  EXPECT_GT(d.kl, 0);
  // KL by hand.
  double zr = 0, zt = 0, kl = 0;
  for (size_t i = 0; i < ref.size(); ++i) zr += std::exp(ref[i]), zt += std::exp(moved[i]);
  for (size_t i = 0; i < ref.size(); ++i) {
    const double pr = std::exp(ref[i]) / zr, pt = std::exp(moved[i]) / zt;
    kl += pr * std::log(pr / pt);
  }
  EXPECT_NEAR(d.kl, kl, 1e-9);

  // A flipped argmax where ref's own margin is within 2 x tie_rel x max|ref| is a near-tie; a big margin is not.
  const std::vector<float> tie_ref = {2.0f, 2.0001f, 0.0f};
  const std::vector<float> tie_test = {2.0001f, 2.0f, 0.0f};
  auto t = compare_row(tie_test, tie_ref, 1e-3);
  EXPECT_FALSE(t.top1_agree);
  EXPECT_TRUE(t.near_tie);
  const std::vector<float> far_ref = {2.0f, 3.0f, 0.0f};
  const std::vector<float> far_test = {3.5f, 3.0f, 0.0f};
  auto f = compare_row(far_test, far_ref, 1e-3);
  EXPECT_FALSE(f.top1_agree);
  EXPECT_FALSE(f.near_tie);

  std::vector<float> nan = ref;
  nan[2] = NAN;
  EXPECT_TRUE(std::isinf(compare_row(nan, ref, 1e-3).max_abs));

  LogitsSummary s;
  s.add(same);
  s.add(t);
  s.add(f);
  s.finish();
  EXPECT_EQ(s.positions, 3);
  EXPECT_DOUBLE_EQ(s.top1_rate(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.top1_rate_raw(), 1.0 / 3.0);
  EXPECT_NEAR(s.mean_kl, (same.kl + t.kl + f.kl) / 3, 1e-12);
}

ModelConfig small_config() {
  ModelConfig c;
  c.architecture = "InternLM2ForCausalLM";
  c.hidden_size = 64;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 128;
  c.vocab_size = 300;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.hidden_act = "silu";
  c.torch_dtype = "bfloat16";
  return c;
}

TEST(ValidateOperators, CpuMatchesRefOnEveryOperatorAndFaultIsCaught) {
  auto cpu = make_backend("cpu", 2, Precision::Exact), ref = make_backend("ref", 2);
  OpCaseOptions o;
  o.tokens = 5;
  o.max_head_rows = 200;
  o.attention_past = 9;
  const auto cases = run_operator_cases(*cpu, *ref, small_config(), {}, o);
  std::set<std::string> ops;
  for (const auto& k : cases) {
    ops.insert(k.op);
    EXPECT_LT(k.err.rel, 1e-5) << k.op << " " << k.name;
  }
  EXPECT_EQ(ops, (std::set<std::string>{"embedding", "matmul", "rmsnorm", "rope", "attention", "silu_mul", "add"}));
  bool sampled = false;
  for (const auto& k : cases) sampled = sampled || k.shape.find("(first 200 of 300 vocab rows)") != std::string::npos;
  EXPECT_TRUE(sampled);

  // The same with the attention operator perturbed: only attention moves, by the stated amount.
  auto faulty = make_faulty_backend(make_backend("cpu", 2, Precision::Exact), parse_fault("attention:0.05"));
  for (const auto& k : run_operator_cases(*faulty, *ref, small_config(), {}, o)) {
    if (k.op == "attention")
      EXPECT_NEAR(k.err.rel, 0.05, 0.01) << k.name;
    else
      EXPECT_LT(k.err.rel, 1e-5) << k.op;
  }
  // Quantized weights: both backends compute with the same quantized values.
  for (const auto& k : run_operator_cases(*cpu, *ref, small_config(), parse_quant("int4"), o))
    EXPECT_LT(k.err.rel, 1e-4) << k.op << " " << k.name;
  // The fast path: only matmul rounds (bf16 activations), within validate's fast tolerance.
  auto fast = make_backend("cpu", 2, Precision::Fast);
  for (const auto& k : run_operator_cases(*fast, *ref, small_config(), {}, o))
    EXPECT_LT(k.err.rel, k.op == "matmul" ? 8e-3 : 1e-5) << k.op << " " << k.name;
}

TEST(ValidateOperators, CompareOutputsCountsNanAsInfinite) {
  const std::vector<float> want = {1, -2, 4};
  EXPECT_EQ(compare_outputs(want, want).rel, 0);
  const std::vector<float> got = {1, -2, NAN};
  EXPECT_TRUE(std::isinf(compare_outputs(got, want).rel));
  const std::vector<float> off = {1, -2, 4.4f};
  EXPECT_NEAR(compare_outputs(off, want).rel, 0.1, 1e-6);
  EXPECT_NEAR(compare_outputs(off, want).ref_peak, 4, 0);
}

TEST(ValidateFault, ParsesSpecsAndRejectsBadOnes) {
  const auto f = parse_fault("matmul:1e-2");
  EXPECT_EQ(f.op, "matmul");
  EXPECT_DOUBLE_EQ(f.rel, 1e-2);
  EXPECT_EQ(f.str(), "matmul:0.01");
  EXPECT_THROW(parse_fault("matmul"), Error);
  EXPECT_THROW(parse_fault("gemm:1e-2"), Error);
  EXPECT_THROW(parse_fault("matmul:-1"), Error);
  EXPECT_THROW(parse_fault("matmul:x"), Error);
  auto be = make_faulty_backend(make_backend("ref", 1), f);
  EXPECT_EQ(be->name(), "ref");
  bool marked = false;
  for (const auto& op : be->operators()) marked = marked || op.description.find("fault injected") != std::string::npos;
  EXPECT_TRUE(marked);
}

TEST(ValidatePrompts, ShippedSetCoversTheCategoriesAndErrorsNameTheLine) {
  const auto ps = load_prompts(std::filesystem::path(INTERNLM_SOURCE_DIR) / "data" / "prompts.jsonl");
  std::set<std::string> ids;
  bool multi = false, stop = false, raw = false;
  for (const auto& p : ps) {
    ids.insert(p.id);
    multi = multi || p.messages.size() >= 3;
    stop = stop || !p.stop.empty();
    raw = raw || !p.chat;
  }
  for (const char* id : {"zh_intro", "en_qa", "code", "arithmetic", "long_answer", "multi_turn", "stop_string", "unicode"})
    EXPECT_TRUE(ids.count(id)) << id;
  EXPECT_TRUE(multi && stop && raw);
  auto err = [](const std::string& text) {
    try {
      parse_prompts(text, "p.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"prompt\": \"y\"}\n").find("p.jsonl:2: missing \"id\""),
            std::string::npos);
  EXPECT_NE(err("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n").find("duplicate id 'a'"),
            std::string::npos);
  EXPECT_NE(err("{\"id\": \"a\"}").find("needs \"messages\" or \"prompt\""), std::string::npos);
  EXPECT_NE(err("{\"id\": \"a\", \"prompt\": \"x\", \"stop\": [\"\"]}").find("non-empty strings"), std::string::npos);
  EXPECT_NE(err("not json").find("p.jsonl:1: invalid JSON"), std::string::npos);
  EXPECT_NE(err("\n\n").find("no prompts"), std::string::npos);
}

TEST(ValidateSubprocess, ExitStatusTimeoutAndQuoting) {
  test::TempDir dir("validate-sub");
  const auto out = dir.path() / "out.log";
  EXPECT_EQ(run_command({"/bin/sh", "-c", "echo hi; exit 3"}, out, out, 10), 3);
  EXPECT_EQ(slurp(out), "hi\n");
  EXPECT_EQ(run_command({"/bin/sh", "-c", "sleep 5"}, out, out, 0.2), std::nullopt);
  EXPECT_THROW(Subprocess({"/no/such/program"}, out, out), Error);
  const auto ready = dir.path() / "ready.log";
  Subprocess p({"/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.05; done"}, ready, ready);
  for (int i = 0; i < 500 && slurp(ready).find("ready") == std::string::npos; ++i) usleep(10000);  // trap installed
  EXPECT_FALSE(p.poll().has_value());
  EXPECT_EQ(p.stop(5), 0);  // SIGTERM, handled: a clean exit
  EXPECT_EQ(shell_join({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
}

TEST(ValidateCharts, SvgIsWellFormedAndEscaped) {
  LineChart c;
  c.title = "Latency <ms> & more";
  c.x_label = "x";
  c.y_label = "y";
  c.step = true;
  c.series.push_back(cdf_series("c=1", {3, 1, 2}));
  const std::string s = svg_line_chart(c);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("</svg>"), std::string::npos);
  EXPECT_NE(s.find("<path d=\"M"), std::string::npos);
  EXPECT_NE(s.find("Latency &lt;ms&gt; &amp; more"), std::string::npos);
  EXPECT_EQ(s.find("<ms>"), std::string::npos);
  const auto cdf = cdf_series("x", {3, 1, 2});
  EXPECT_EQ(cdf.x, (std::vector<double>{1, 2, 3}));
  EXPECT_DOUBLE_EQ(cdf.y.back(), 1.0);

  LineChart empty;
  empty.title = "nothing";
  EXPECT_NE(svg_line_chart(empty).find("no data"), std::string::npos);

  BarChart b;
  b.title = "errors";
  b.labels = {"matmul", "add"};
  b.values = {1e-7, 0};
  b.limits = {1e-3, 1e-6};
  b.ok = {true, false};
  const std::string bs = svg_bar_chart(b);
  EXPECT_NE(bs.find("#d62728"), std::string::npos);  // the failing bar is red
  EXPECT_NE(bs.find("stroke-dasharray"), std::string::npos);  // tolerance marks
}

nlohmann::json tiny_report() {
  StageResult s;
  s.id = "operators";
  s.title = "Operators";
  Check c;
  c.id = "operators.matmul.x";
  c.name = "matmul | x";
  c.status = Status::Fail;
  c.detail = "error <1e-2> too big";
  c.value = 0.01;
  c.threshold = 1e-3;
  c.source = "cpu vs ref";
  s.add(c);
  s.data["cases"] = nlohmann::json::array(
      {{{"op", "matmul"}, {"case", "x"}, {"shape", "[1,2]"}, {"max_abs", 0.1}, {"rel", 0.01}, {"tolerance", 1e-3},
        {"status", "fail"}}});
  s.finish();
  nlohmann::json r = {{"schema_version", 1}, {"tool", "internlm validate"}, {"engine_version", "0"},
                      {"command", "internlm validate"}, {"started_at", "2026-01-01T00:00:00Z"},
                      {"finished_at", "2026-01-01T00:00:01Z"}, {"duration_s", 1.0}, {"verdict", "fail"},
                      {"settings", {{"model_dir", "m"}, {"backend", "cpu"}, {"quant", "none"}, {"threads", 0},
                                    {"mode", "quick"}, {"golden_dir", nullptr}, {"prompts_file", "p"},
                                    {"config_file", nullptr}, {"stages", "all"}, {"out_dir", "o"},
                                    {"fault_injection", nullptr}}},
                      {"machine", {{"cpu_model", "cpu"}, {"os", "os"}, {"memory_total_bytes", 1e9}}},
                      {"thresholds", Thresholds().to_json()},
                      {"stages", {stage_json(s)}},
                      {"counts", {{"pass", 0}, {"fail", 1}, {"warn", 0}, {"info", 0}, {"skip", 0}}},
                      {"artifacts", {"report.json"}}};
  return r;
}

TEST(ValidateRender, MarkdownHtmlAndTableCarryTheVerdictAndEscape) {
  const auto r = tiny_report();
  const std::string md = render_markdown(r);
  EXPECT_NE(md.find("**Verdict: FAIL**"), std::string::npos);
  EXPECT_NE(md.find("matmul \\| x"), std::string::npos);  // table cells escaped
  EXPECT_NE(md.find("`operators.matmul_rel_tol`"), std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("Verdict: FAIL"), std::string::npos);
  EXPECT_NE(html.find("error &lt;1e-2&gt; too big"), std::string::npos);
  EXPECT_EQ(html.find("error <1e-2>"), std::string::npos);
  EXPECT_GE(static_cast<int>([&] {
              int n = 0;
              for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++n;
              return n;
            }()),
            7);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);  // self-contained
  const std::string table = render_table(r);
  EXPECT_NE(table.find("VERDICT: FAIL (1 checks failed)"), std::string::npos);
  EXPECT_NE(table.find("FAIL matmul | x: error <1e-2> too big"), std::string::npos);
}

}  // namespace
}  // namespace ilm::validate
