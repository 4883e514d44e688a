#!/usr/bin/env python3
"""End-to-end checks of `internlm validate`: a --quick run on a tiny synthetic checkpoint (with
golden logits) passes and writes a report.json that conforms to data/report.schema.json; a
truncated shard and an injected numeric error in a backend operator each fail the right check
with a clear reason; a bad config file is refused; every setting is documented; and the HTML
report renders its charts in headless Chromium (skipped with a message when Chromium is
missing). Run by ctest with INTERNLM_BIN and INTERNLM_TEST_TMP set."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "validate")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "data", "report.schema.json")
RESULTS = {"passed": 0, "failed": 0, "skipped": 0}


def run(*args, env=None, timeout=600):
    return subprocess.run([BIN, *args], capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def check(name, fn):
    try:
        r = fn()
        if r == "skip":
            RESULTS["skipped"] += 1
            return
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {e!r}")


# --- A small JSON Schema checker (the draft-07 subset data/report.schema.json uses) -------------

def schema_errors(value, schema, root, path="$"):
    errs = []
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        return schema_errors(value, target, root, path)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        def is_type(t):
            return {"object": isinstance(value, dict), "array": isinstance(value, list),
                    "string": isinstance(value, str), "boolean": isinstance(value, bool),
                    "null": value is None,
                    "integer": isinstance(value, int) and not isinstance(value, bool),
                    "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[t]
        if not any(is_type(t) for t in types):
            return [f"{path}: {type(value).__name__} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema:
        if value < schema["minimum"]:
            errs.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errs.append(f"{path}: missing {k!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errs += schema_errors(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                errs.append(f"{path}: unexpected property {k!r}")
            elif isinstance(extra, dict):
                errs += schema_errors(v, extra, root, f"{path}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, v in enumerate(value):
                errs += schema_errors(v, schema["items"], root, f"{path}[{i}]")
    return errs


def validate_schema(report):
    schema = json.load(open(SCHEMA))
    errs = schema_errors(report, schema, schema)
    assert not errs, "report.json does not conform to the schema:\n  " + "\n  ".join(errs[:20])
    try:  # the Debian package python3-jsonschema, when installed (scripts/setup.sh installs it)
        import jsonschema
    except ImportError:
        print("note: python3-jsonschema not installed; only the built-in schema checker ran")
        return
    jsonschema.validate(report, schema)


def checks_of(report):
    return {c["id"]: c for s in report["stages"] for c in s["checks"]}


def stage_of(report, sid):
    return next(s for s in report["stages"] if s["id"] == sid)


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    model = os.path.join(TMP, "tiny")
    p = run("synth", "--preset", "tiny", "--seed", "3", "--out", model)
    assert p.returncode == 0, p.stderr.decode()

    # Golden logits made "elsewhere": the ref backend through `internlm logits`, same format as
    # tools/hf_reference.py writes.
    golden = os.path.join(TMP, "golden")
    os.makedirs(golden)
    # Named after prompts of data/prompts.jsonl with a "prompt_id", as tools/hf_reference.py
    # writes them, so the tokenization check runs too.
    for name, prompt in (("zh_intro", "你好，请介绍一下你自己"),
                         ("en_qa", "What is the capital of France, and why is it famous?")):
        path = os.path.join(golden, name + ".f32")
        p = run("logits", "--model", model, "--backend", "ref", "--chat", "--prompt", prompt, "--out", path)
        assert p.returncode == 0, p.stderr.decode()
        meta = json.load(open(path + ".json"))
        meta["prompt_id"] = name
        meta["source"] = "internlm logits --backend ref"
        json.dump(meta, open(path + ".json", "w"))

    out = os.path.join(TMP, "report")
    t0 = time.time()
    quick = run("validate", "--model", model, "--quick", "--out", out, "--golden", golden)
    quick_s = time.time() - t0
    print(f"note: validate --quick on the tiny model took {quick_s:.1f} s")
    report = {}

    def quick_passes():
        err = quick.stderr.decode(errors="replace")
        assert quick.returncode == 0, f"exit {quick.returncode}\n{quick.stdout.decode()}\n{err[-3000:]}"
        report.update(json.load(open(os.path.join(out, "report.json"))))
        assert report["verdict"] in ("pass", "warn"), report["verdict"]
        assert report["counts"]["fail"] == 0, report["counts"]
        table = quick.stdout.decode()
        assert "VERDICT: PASS" in table or "VERDICT: WARN" in table, table
        for sid in ("environment", "model", "operators", "precision", "inference", "api", "performance"):
            assert sid in table, table
        assert "[3/8] Operators" in err and "[8/8] Report" in err, err[:2000]  # the live progress view
        assert quick_s < 110, f"validate --quick took {quick_s:.1f} s"

    def schema_conforms():
        assert report, "no report"
        validate_schema(report)
        # The schema is not vacuous: a report missing a check's verdict is rejected.
        broken = json.loads(json.dumps(report))
        del broken["stages"][2]["checks"][0]["status"]
        schema = json.load(open(SCHEMA))
        assert schema_errors(broken, schema, schema), "schema accepted a check without a status"

    def every_stage_measured():
        c = checks_of(report)
        for cid in ("environment.memory", "environment.disk", "model.checkpoint", "model.shapes",
                    "model.tokenizer_round_trip", "model.chat_template", "model.load", "operators.matrix",
                    "operators.matmul.wqkv_T_1", "operators.attention.T_8_past_64", "precision.logits_rel_error",
                    "precision.kl", "precision.top1", "precision.greedy", "precision.golden_rel_error",
                    "precision.golden_kl", "precision.golden_top1", "precision.golden_tokenization",
                    "inference.determinism", "inference.zh_intro", "inference.multi_turn",
                    "api.chat", "api.stream", "api.completions", "api.models", "api.tokenize", "api.metrics",
                    "api.invalid", "api.shutdown", "performance.prefill", "performance.decode",
                    "performance.decode_roofline", "performance.serving_failures", "performance.serving_c1.ttft",
                    "performance.serving_c16.e2el", "performance.serving_scaling", "performance.sweep"):
            assert cid in c, f"missing check {cid}"
            assert c[cid]["status"] in ("pass", "info"), (cid, c[cid])
            assert c[cid]["detail"] and (c[cid]["source"] or cid.startswith("environment")), (cid, c[cid])
        # Operators: every case within its tolerance, with the error measured.
        for case in stage_of(report, "operators")["data"]["cases"]:
            assert case["rel"] is not None and case["rel"] <= case["tolerance"] or case["tolerance"] == 0, case
        # Inference: 9 prompts, identical twice, token counts within max_tokens.
        rows = stage_of(report, "inference")["data"]["prompts"]
        assert len(rows) == 9 and all(r["deterministic"] for r in rows), rows
        assert all(0 < r["completion_tokens"] <= r["max_tokens"] for r in rows), rows
        # Precision vs golden (the same ref logits): near-exact.
        g = stage_of(report, "precision")["data"]["golden"]["summary"]
        # (the default fast path rounds activations to bf16: its bound is the precision rule's)
        assert report["settings"]["precision"] == "fast", report["settings"]
        assert g["positions"] > 20 and g["max_rel"] < 6e-3, g

    def numbers_come_from_the_run():
        # The serving figures in the report are those of the bench-serve JSON this run wrote,
        # and the sweep / bench figures are this run's (positive, with their settings).
        bs = json.load(open(os.path.join(out, "bench-serve.json")))
        levels = stage_of(report, "performance")["data"]["serving"]["levels"]
        assert [l["concurrency"] for l in levels] == [1, 16], levels
        for mine, theirs in zip(levels, bs["levels"]):
            assert mine["output_throughput"] == theirs["output_throughput"]
            assert mine["ttft_ms"]["p99"] == theirs["ttft_ms"]["p99"]
            assert len(mine["ttft_ms_samples"]) == theirs["completed"]
        perf = stage_of(report, "performance")["data"]
        assert perf["bench"]["pp_tokens_per_s"]["mean"] > 0 and perf["bench"]["fma_peak_gflops"] > 0
        assert any("decode_tokens_per_s" in r for r in perf["sweep"]["rows"]), perf["sweep"]
        for r in perf["sweep"]["rows"]:
            if "decode_tokens_per_s" in r:  # every measured length has its own roofline
                assert r["context"] in ("prefilled", "synthesized") and r["bytes_per_token"] > 0, r
                assert r["roofline_tokens_per_s"] > 0 and r["roofline_ratio"]["vs_highest_bandwidth"] > 0, r
        for f in ("report.md", "report.html", "validate.log", "serve-api.log", "api-exchanges.jsonl",
                  "bench-serve.json", "bench-serve.log", "serve-bench.log"):
            assert os.path.getsize(os.path.join(out, f)) > 0, f
        md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
        assert "**Verdict: PASS**" in md or "**Verdict: WARN**" in md
        assert str(round(levels[1]["output_throughput"], 1)) in md, "serving throughput missing from report.md"
        html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
        assert html.count("<svg") >= 7 and "http://" not in html.replace("http://www.w3.org/2000/svg", "") \
            .replace("http://127.0.0.1", ""), "charts missing or external resources referenced"
        for title in ("TTFT CDF per concurrency", "Throughput vs concurrency", "Decode speed vs context length",
                      "Per-operator relative error"):
            assert title in html, title

    check("quick run passes", quick_passes)
    check("report.json conforms to data/report.schema.json", schema_conforms)
    check("every stage measured its checks", every_stage_measured)
    check("report figures come from this run", numbers_come_from_the_run)

    def truncated_shard_fails_model_check():
        bad = os.path.join(TMP, "sharded")
        p = run("synth", "--preset", "tiny", "--seed", "3", "--shard-mb", "20", "--out", bad)
        assert p.returncode == 0, p.stderr.decode()
        shards = sorted(f for f in os.listdir(bad) if f.endswith(".safetensors"))
        assert len(shards) >= 2, shards
        victim = os.path.join(bad, shards[1])
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) - 1000)
        rep = os.path.join(TMP, "report-bad")
        p = run("validate", "--model", bad, "--out", rep, "--stages", "operators,precision")
        assert p.returncode == 1, f"exit {p.returncode}: {p.stderr.decode()[-2000:]}"
        r = json.load(open(os.path.join(rep, "report.json")))
        validate_schema(r)
        assert r["verdict"] == "fail"
        c = checks_of(r)["model.checkpoint"]
        assert c["status"] == "fail" and shards[1] in c["detail"] and "past the end" in c["detail"], c
        for sid in ("precision", "inference", "api", "performance"):
            s = stage_of(r, sid)
            assert s["status"] == "skip", s
        assert "model did not load" in stage_of(r, "precision")["summary"]
        assert "FAIL Config, index and shards readable" in p.stdout.decode(), p.stdout.decode()

    def int8_kv_cache_reaches_the_servers():
        rep = os.path.join(TMP, "report-kv-int8")
        p = run("validate", "--model", model, "--out", rep, "--stages", "api", "--kv-cache-dtype", "int8")
        assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode()[-2000:]}"
        r = json.load(open(os.path.join(rep, "report.json")))
        validate_schema(r)
        assert r["machine"]["kv_cache_dtype"] == "int8", r["machine"]
        assert stage_of(r, "api")["status"] == "pass", stage_of(r, "api")
        log = open(os.path.join(rep, "serve-api.log")).read()
        assert "int8" in log, log[:500]
        assert "int8 KV cache" in checks_of(r)["environment.memory"]["detail"]
        p = run("validate", "--model", model, "--out", rep, "--kv-cache-dtype", "i8")
        assert p.returncode != 0 and b"--kv-cache-dtype must be" in p.stderr, p.stderr

    def sweep_synthesizes_what_the_budget_cannot_prefill():
        # A budget no prefill fits: the first length is decoded after a synthesised context
        # (in the requested KV dtype, with its roofline), the others are skipped as over budget.
        rep = os.path.join(TMP, "report-sweep")
        cfg = os.path.join(TMP, "sweep.toml")
        open(cfg, "w").write("[sweep]\nquick_lengths = [200, 400]\nquick_budget_s = 1e-9\n")
        p = run("validate", "--model", model, "--out", rep, "--stages", "performance", "--config", cfg,
                "--kv-cache-dtype", "bf16")
        assert p.returncode in (0, 1), f"exit {p.returncode}: {p.stderr.decode()[-2000:]}"
        r = json.load(open(os.path.join(rep, "report.json")))
        validate_schema(r)
        sweep = stage_of(r, "performance")["data"]["sweep"]
        first, second = sweep["rows"]
        assert sweep["kv_cache_dtype"] == "bf16", sweep
        assert first["context"] == "synthesized" and "prefill_s" not in first and "budget" in first["prefill_skipped"], first
        assert first["decode_tokens_per_s"] > 0 and first["roofline_ratio"]["vs_lowest_bandwidth"] > 0, first
        assert "budget" in second["skipped"], second
        md = open(os.path.join(rep, "report.md"), encoding="utf-8").read()
        assert "synthesised context" in md, md[-3000:]

    def injected_operator_error_fails():
        rep = os.path.join(TMP, "report-fault")
        p = run("validate", "--model", model, "--out", rep, "--stages", "operators,precision", "--precision", "exact",
                env={"INTERNLM_FAULT_INJECT": "matmul:1e-2"})
        assert p.returncode == 1, f"exit {p.returncode}: {p.stderr.decode()[-2000:]}"
        r = json.load(open(os.path.join(rep, "report.json")))
        validate_schema(r)
        c = checks_of(r)
        assert r["settings"]["fault_injection"] == "matmul:0.01", r["settings"]
        assert c["environment.fault_injection"]["status"] == "warn"
        matmuls = [v for k, v in c.items() if k.startswith("operators.matmul.")]
        assert len(matmuls) == 10 and all(m["status"] == "fail" for m in matmuls), matmuls
        for m in matmuls:
            assert 5e-3 < m["value"] < 2e-2 and "tolerance 1.00e-03" in m["detail"], m
        others = [v for k, v in c.items() if k.startswith("operators.") and ".matmul." not in k]
        assert others and all(o["status"] == "pass" for o in others), others
        assert c["precision.logits_rel_error"]["status"] == "fail", c["precision.logits_rel_error"]
        assert stage_of(r, "operators")["status"] == "fail" and stage_of(r, "precision")["status"] == "fail"

    def bad_config_refused():
        cfg = os.path.join(TMP, "bad.toml")
        open(cfg, "w").write("[precision]\nmax_rel_error = 1e-3\nno_such_key = 2\n")
        p = run("validate", "--model", model, "--out", os.path.join(TMP, "r-cfg"), "--config", cfg)
        err = p.stderr.decode()
        assert p.returncode != 0 and "bad.toml:3" in err and "precision.no_such_key" in err, err
        open(cfg, "w").write("[sweep]\nquick_lengths = [512, oops]\n")
        p = run("validate", "--model", model, "--out", os.path.join(TMP, "r-cfg"), "--config", cfg)
        assert p.returncode != 0 and "bad.toml:2" in p.stderr.decode(), p.stderr.decode()

    def config_applies_and_every_key_is_documented():
        p = run("validate", "--print-config")
        assert p.returncode == 0
        text = p.stdout.decode()
        keys, section = [], ""
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("["):
                section = line[1:-1]
            elif "=" in line:
                keys.append(section + "." + line.split("=")[0].strip())
        assert len(keys) > 40, keys
        doc = open(os.path.join(ROOT, "docs", "VALIDATION.md"), encoding="utf-8").read()
        missing = [k for k in keys if f"`{k}`" not in doc]
        assert not missing, f"settings not documented in docs/VALIDATION.md: {missing}"
        # A tightened threshold turns a pass into a fail: the printed defaults are a valid config.
        cfg = os.path.join(TMP, "strict.toml")
        open(cfg, "w").write(text.replace("rmsnorm_rel_tol = 1e-05", "rmsnorm_rel_tol = 1e-12"))
        rep = os.path.join(TMP, "report-strict")
        p = run("validate", "--model", model, "--out", rep, "--stages", "operators", "--config", cfg)
        r = json.load(open(os.path.join(rep, "report.json")))
        c = checks_of(r)
        assert r["thresholds"]["operators.rmsnorm_rel_tol"]["value"] == 1e-12
        assert r["thresholds"]["operators.rmsnorm_rel_tol"]["origin"].startswith(cfg)
        norm = [v for k, v in c.items() if k.startswith("operators.rmsnorm.")]
        # rmsnorm on cpu is within ~1e-7 of ref, not 1e-12, unless both are bit-identical.
        if any(v["value"] > 1e-12 for v in norm):
            assert p.returncode == 1 and any(v["status"] == "fail" for v in norm), norm

    def wrong_golden_fails():
        # Golden logits of another model (different weights): the golden checks must fail.
        other = os.path.join(TMP, "other")
        assert run("synth", "--preset", "tiny", "--seed", "4", "--out", other).returncode == 0
        g2 = os.path.join(TMP, "golden-other")
        os.makedirs(g2)
        p = run("logits", "--model", other, "--chat", "--prompt", "你好", "--out", os.path.join(g2, "x.f32"))
        assert p.returncode == 0, p.stderr.decode()
        cfg = os.path.join(TMP, "small.toml")
        open(cfg, "w").write("[precision]\nquick_prompts = 1\nmax_prompt_tokens = 8\nquick_greedy_tokens = 2\n")
        rep = os.path.join(TMP, "report-golden")
        p = run("validate", "--model", model, "--out", rep, "--stages", "precision", "--golden", g2, "--config", cfg)
        assert p.returncode == 1, f"exit {p.returncode}: {p.stderr.decode()[-1500:]}"
        c = checks_of(json.load(open(os.path.join(rep, "report.json"))))
        assert c["precision.golden_rel_error"]["status"] == "fail", c["precision.golden_rel_error"]
        assert c["precision.logits_rel_error"]["status"] == "pass"  # the backend itself is fine
        assert "golden" in c["precision.golden_rel_error"]["name"]

    def hf_reference_tool():
        tool = os.path.join(ROOT, "tools", "hf_reference.py")
        p = subprocess.run([sys.executable, tool, "--help"], capture_output=True, timeout=60)
        assert p.returncode == 0 and b"--model" in p.stdout and b"--out" in p.stdout, p
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            p = subprocess.run([sys.executable, tool, "--model", model, "--out", os.path.join(TMP, "hf")],
                               capture_output=True, timeout=60)
            assert p.returncode == 2 and b"needs torch and transformers" in p.stderr, p.stderr
            print("note: torch/transformers not installed: tools/hf_reference.py checked for --help and its "
                  "error message only")
            return
        hf = os.path.join(TMP, "hf")
        p = subprocess.run([sys.executable, tool, "--model", model, "--out", hf, "--max-prompts", "2"],
                           capture_output=True, timeout=600)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        rep = os.path.join(TMP, "report-hf")
        cfg = os.path.join(TMP, "small-hf.toml")
        open(cfg, "w").write("[precision]\nquick_prompts = 1\nmax_prompt_tokens = 8\nquick_greedy_tokens = 2\n")
        p = run("validate", "--model", model, "--out", rep, "--stages", "precision", "--golden", hf, "--config", cfg)
        assert p.returncode == 0, p.stdout.decode()[-2000:]

    check("golden logits of other weights fail the golden checks", wrong_golden_fails)
    check("tools/hf_reference.py", hf_reference_tool)
    check("truncated shard fails the model check", truncated_shard_fails_model_check)
    check("--kv-cache-dtype int8 reaches the servers validate starts", int8_kv_cache_reaches_the_servers)
    check("sweep decodes after a synthesised context where prefill would overrun the budget",
          sweep_synthesizes_what_the_budget_cannot_prefill)
    check("injected matmul error fails operators and precision", injected_operator_error_fails)
    check("bad config file is refused with file:line", bad_config_refused)
    check("config keys documented, printed defaults load, thresholds apply", config_applies_and_every_key_is_documented)

    def html_renders_in_chromium():
        browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not browser:
            print("skip html_renders_in_chromium: no chromium on PATH (scripts/setup.sh installs Debian's "
                  "'chromium'; apt-get install chromium)")
            return "skip"
        html = os.path.join(out, "report.html")
        profile = os.path.join(TMP, "chromium-profile")
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", f"--user-data-dir={profile}"]
        p = subprocess.run(common + ["--dump-dom", "file://" + html], capture_output=True, timeout=120)
        dom = p.stdout.decode(errors="replace")
        assert p.returncode == 0 and "<svg" in dom, f"exit {p.returncode}: {p.stderr.decode()[-1500:]}"
        m = re.search(r'data-charts-rendered="(\d+)"', dom)
        assert m and int(m.group(1)) >= 7, f"charts not rendered by the browser: {m and m.group(0)}"
        shot = os.path.join(TMP, "report.png")
        p = subprocess.run(common + ["--window-size=1280,2400", f"--screenshot={shot}", "file://" + html],
                           capture_output=True, timeout=120)
        assert p.returncode == 0 and os.path.getsize(shot) > 20000, p.stderr.decode()[-1500:]
        assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    check("HTML report renders its charts in headless Chromium", html_renders_in_chromium)

    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed, {RESULTS['skipped']} skipped")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
