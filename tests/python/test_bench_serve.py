#!/usr/bin/env python3
"""End-to-end checks of `internlm bench-serve` against a fake OpenAI-compatible SSE server
(http.server in a thread) whose delays are known: TTFT / TPOT / ITL / E2EL and throughput
against those delays (with tolerance), output tokens from `usage` rather than chunks, early
stops, failure counting with status and body, the warm-up, datasets (completions and chat),
Poisson arrivals, the JSON schema, progress lines, and the three scenarios passing and failing.
When `internlm serve` is built (not the placeholder), also a short run against the real server
on a tiny synthetic model. Run by ctest with INTERNLM_BIN and INTERNLM_TEST_TMP set."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import RESULTS, check

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "bench-serve")

DEFAULTS = {
    "ttft": 0.2,            # seconds before the first token
    "itl": 0.05,            # seconds between tokens
    "tokens_per_chunk": 1,  # tokens carried by one SSE chunk (usage counts them all)
    "stop_after": None,     # finish with "stop" after this many tokens
    "fail_every": 0,        # every Nth generation request answers HTTP 503
    "cold_ttft": None,      # chat: TTFT when the system prompt is new ...
    "cached_ttft": None,    # ... and when it was seen before (a prefix cache)
    "long_threshold": None, # completions prompts with at least this many ids are "long" ...
    "long_ttft": 0.4,       # ... and take this long to their first token ...
    "long_stalls": False,   # ... during which every other stream stalls (no chunked prefill)
    "api_key": None,        # require 'Authorization: Bearer KEY'
}


class Fake:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self, **cfg):
        with self.lock:
            self.cfg = {**DEFAULTS, **cfg}
            self.requests = []  # (path, body)
            self.count = 0
            self.seen_systems = set()
            self.stall_until = 0.0
            self.disconnects = 0


FAKE = Fake()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def unauthorized(self):
        key = FAKE.cfg["api_key"]
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return False
        self.send_json(401, {"error": {"message": "invalid api key", "type": "authentication_error"}})
        return True

    def do_GET(self):
        if self.unauthorized():
            return
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        elif self.path == "/metrics":
            body = b"# TYPE internlm_prefix_cache_hits_total counter\ninternlm_prefix_cache_hits_total 5\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.unauthorized():
            return
        if self.path == "/tokenize":
            n = len(body.get("prompt", "").split())
            self.send_json(200, {"tokens": list(range(n)), "count": n})
            return
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self.send_json(404, {"error": {"message": "not found"}})
            return
        with FAKE.lock:
            FAKE.requests.append((self.path, body))
            FAKE.count += 1
            cfg = dict(FAKE.cfg)
            fail = cfg["fail_every"] and FAKE.count % cfg["fail_every"] == 0
        if fail:
            self.send_json(503, {"error": {"message": "overloaded (injected)", "type": "server_error"}})
            return
        try:
            self.stream(body, cfg, chat=self.path.endswith("chat/completions"))
        except (BrokenPipeError, ConnectionResetError):
            with FAKE.lock:
                FAKE.disconnects += 1
        self.close_connection = True

    def chunk(self, obj):
        data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, body, cfg, chat):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        ttft = cfg["ttft"]
        prompt_tokens = 0
        long = False
        if chat:
            self.chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            msgs = body["messages"]
            prompt_tokens = sum(len(m["content"].split()) for m in msgs)
            system = msgs[0]["content"] if msgs[0]["role"] == "system" else None
            if system is not None and cfg["cold_ttft"] is not None:
                with FAKE.lock:
                    seen = system in FAKE.seen_systems
                    FAKE.seen_systems.add(system)
                ttft = cfg["cached_ttft"] if seen else cfg["cold_ttft"]
        else:
            p = body["prompt"]
            prompt_tokens = len(p) if isinstance(p, list) else len(p.split())
            if cfg["long_threshold"] and isinstance(p, list) and len(p) >= cfg["long_threshold"]:
                long = True
                ttft = cfg["long_ttft"]
                if cfg["long_stalls"]:
                    with FAKE.lock:
                        FAKE.stall_until = time.monotonic() + ttft
        max_tokens = body["max_tokens"]
        n = max_tokens if cfg["stop_after"] is None else min(max_tokens, cfg["stop_after"])
        per = cfg["tokens_per_chunk"]
        time.sleep(ttft)
        sent = 0
        while sent < n:
            if sent > 0:
                time.sleep(cfg["itl"])
            while not long:
                with FAKE.lock:
                    wait = FAKE.stall_until - time.monotonic()
                if wait <= 0:
                    break
                time.sleep(wait)
            k = min(per, n - sent)
            sent += k
            finish = None if sent < n else ("length" if sent == max_tokens else "stop")
            text = "tok " * k
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            choice["finish_reason"] = finish
            self.chunk({"id": "x", "choices": [choice]})
        if body.get("stream_options", {}).get("include_usage"):
            self.chunk({"id": "x", "choices": [],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                  "total_tokens": prompt_tokens + n}})
        self.chunk(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16 connections at once must not wait for a SYN retry


def start_fake():
    srv = FakeServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def bench(url, *args, ok=True, timeout=120, url_flag="--url"):
    p = subprocess.run([BIN, "bench-serve", url_flag, url, *args], capture_output=True, timeout=timeout)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if ok and p.returncode != 0:
        raise AssertionError(f"bench-serve {args} exited {p.returncode}:\n{err}\n{out}")
    return p.returncode, out, err


def load(path):
    with open(path) as f:
        return json.load(f)


def near(value, want, tol, what):
    assert abs(value - want) <= tol, f"{what} = {value:.2f}, expected {want} ± {tol}"


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    srv, url = start_fake()

    def metrics_math():
        FAKE.reset(ttft=0.2, itl=0.05)
        out_json = os.path.join(TMP, "basic.json")
        _, out, err = bench(url, "--concurrency", "1,2", "--num-prompts", "4", "--input-len", "16",
                            "--output-len", "5", "--seed", "1", "--json", out_json, "--progress-interval", "0.2")
        j = load(out_json)
        assert j["server"]["model"] == "fake-model", j["server"]
        s = j["settings"]
        assert s["concurrency"] == [1, 2] and s["num_prompts"] == 4 and s["input_len"] == 16, s
        assert s["output_len"] == 5 and s["request_rate"] == "inf" and s["seed"] == 1 and s["warmup"] == 1, s
        assert [lv["concurrency"] for lv in j["levels"]] == [1, 2]
        for lv, want_dur in zip(j["levels"], (1.6, 0.8)):
            assert lv["completed"] == 4 and lv["failed"] == 0 and lv["errors"] == [], lv
            near(lv["ttft_ms"]["median"], 200, 60, "TTFT median (ms)")
            near(lv["ttft_ms"]["p99"], 200, 90, "TTFT P99 (ms)")
            near(lv["itl_ms"]["median"], 50, 20, "ITL median (ms)")
            near(lv["tpot_ms"]["mean"], 50, 20, "TPOT mean (ms)")
            near(lv["e2el_ms"]["median"], 400, 100, "E2EL median (ms)")
            assert lv["itl_ms"]["count"] == 16 and lv["tpot_ms"]["count"] == 4, lv
            assert lv["total_output_tokens"] == 20 and lv["mean_output_len"] == 5, lv
            assert lv["total_input_tokens"] == 64 and lv["stopped_early"] == 0, lv
            near(lv["duration_s"], want_dur, 0.4, "duration (s)")
            near(lv["request_throughput"], 4 / lv["duration_s"], 1e-6, "request throughput")
            near(lv["output_throughput"], 20 / lv["duration_s"], 1e-6, "output throughput")
            near(lv["total_token_throughput"], 84 / lv["duration_s"], 1e-6, "total token throughput")
            for key in ("mean", "median", "p90", "p99", "std", "min", "max", "count"):
                assert key in lv["ttft_ms"], key
            assert len(lv["requests"]) == 4
            for r in lv["requests"]:
                assert r["ok"] and r["http_status"] == 200 and r["output_tokens"] == 5, r
                assert r["usage_reported"] and r["finish_reason"] == "length" and r["prompt_tokens"] == 16, r
                assert len(r["itl_s"]) == 4 and all(0.03 < g < 0.15 for g in r["itl_s"]), r
                near(r["e2el_s"], r["ttft_s"] + sum(r["itl_s"]), 0.02, "e2el vs ttft + itl")
        starts = sorted(r["start_s"] for r in j["levels"][1]["requests"])
        assert starts[1] < 0.1 and starts[2] > 0.3, f"concurrency 2 should send two at once: {starts}"
        # What the server saw: 1 warm-up + 8 requests of 16 random ids, greedy, streamed with usage.
        assert len(FAKE.requests) == 9, len(FAKE.requests)
        prompts = set()
        for path, body in FAKE.requests:
            assert path == "/v1/completions", path
            assert body["model"] == "fake-model" and body["max_tokens"] == 5 and body["temperature"] == 0, body
            assert body["stream"] is True and body["stream_options"] == {"include_usage": True}, body
            p = body["prompt"]
            assert len(p) == 16 and all(isinstance(i, int) and 1000 <= i <= 60000 for i in p), p
            prompts.add(tuple(p))
        assert len(prompts) == 9, "every request should have its own prompt"
        for needle in ("Successful requests:", "Output token throughput (tok/s):", "Median TTFT (ms):",
                       "P99 ITL (ms):", "Total token throughput (tok/s):", "P90 TPOT (ms):"):
            assert needle in out, f"{needle!r} not in the report:\n{out}"
        assert re.search(r"concurrency 1: 4/4 requests.*\(done\)", err), err
        assert "concurrency 2: " in err, err

    def usage_not_chunks():
        FAKE.reset(ttft=0.1, itl=0.05, tokens_per_chunk=2)
        out_json = os.path.join(TMP, "usage.json")
        bench(url, "--num-prompts", "2", "--input-len", "8", "--output-len", "10", "--json", out_json,
              "--warmup", "0", "--no-progress")
        lv = load(out_json)["levels"][0]
        assert lv["total_output_tokens"] == 20 and lv["mean_output_len"] == 10, lv
        for r in lv["requests"]:
            assert r["output_tokens"] == 10 and len(r["itl_s"]) == 4, r
            near(r["tpot_s"] * 1e3, 4 * 50 / 9, 10, "TPOT (ms) with 2 tokens per chunk")

    def early_stop():
        FAKE.reset(ttft=0.05, itl=0.02, stop_after=3)
        out_json = os.path.join(TMP, "stop.json")
        _, out, _ = bench(url, "--num-prompts", "3", "--output-len", "8", "--json", out_json, "--no-progress")
        lv = load(out_json)["levels"][0]
        assert lv["mean_output_len"] == 3 and lv["stopped_early"] == 3 and lv["mean_max_tokens"] == 8, lv
        assert all(r["finish_reason"] == "stop" for r in lv["requests"])
        assert "3 requests stopped early" in out, out

    def failures():
        FAKE.reset(ttft=0.02, itl=0.01, fail_every=3)
        out_json = os.path.join(TMP, "fail.json")
        _, out, _ = bench(url, "--num-prompts", "6", "--output-len", "3", "--warmup", "0", "--json", out_json,
                          "--no-progress")
        lv = load(out_json)["levels"][0]
        assert lv["completed"] == 4 and lv["failed"] == 2, lv
        assert len(lv["errors"]) == 1 and lv["errors"][0]["count"] == 2, lv["errors"]
        e = lv["errors"][0]["error"]
        assert "HTTP 503" in e and "overloaded (injected)" in e, e
        bad = [r for r in lv["requests"] if not r["ok"]]
        assert len(bad) == 2 and all(r["http_status"] == 503 and "HTTP 503" in r["error"] for r in bad), bad
        assert re.search(r"Failed requests:\s+2", out) and "2 x HTTP 503" in out, out

    def warmup_failure():
        FAKE.reset(fail_every=1)
        rc, _, err = bench(url, "--num-prompts", "2", ok=False)
        assert rc != 0 and "warm-up" in err and "HTTP 503" in err and "overloaded" in err, err

    def unreachable():
        rc, _, err = bench("http://127.0.0.1:9", "--model", "x", ok=False)
        assert rc != 0 and "error" in err.lower(), err

    def api_key():
        FAKE.reset(ttft=0.02, itl=0.01, api_key="sekrit")
        rc, _, err = bench(url, "--num-prompts", "1", "--output-len", "2", "--no-progress", ok=False)
        assert rc != 0 and "HTTP 401" in err and "invalid api key" in err, err
        rc, _, err = bench(url, "--model", "m", "--num-prompts", "1", "--output-len", "2", "--no-progress", ok=False)
        assert rc != 0 and "warm-up" in err and "HTTP 401" in err, err
        _, out, _ = bench(url, "--api-key", "sekrit", "--num-prompts", "2", "--output-len", "2", "--no-progress")
        assert re.search(r"Successful requests:\s+2", out), out

    def dataset_chat():
        FAKE.reset(ttft=0.2, itl=0.02)
        ds = os.path.join(TMP, "ds.jsonl")
        with open(ds, "w") as f:
            f.write(json.dumps({"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}) + "\n")
            f.write(json.dumps({"prompt": "one two three four"}) + "\n")
        out_json = os.path.join(TMP, "ds.json")
        bench(url, "--dataset", ds, "--num-prompts", "4", "--output-len", "4", "--warmup", "0",
              "--json", out_json, "--no-progress")
        lv = load(out_json)["levels"][0]
        paths = [p for p, _ in FAKE.requests]
        assert paths == ["/v1/chat/completions", "/v1/completions"] * 2, paths
        assert FAKE.requests[0][1]["messages"][0]["content"] == "hello there"
        outs = [r["output_tokens"] for r in lv["requests"]]
        assert outs == [3, 4, 3, 4], outs
        assert [r["prompt_tokens"] for r in lv["requests"]] == [2, 4, 2, 4]
        # The chat stream's role chunk comes at once; TTFT is the first content.
        for r in lv["requests"]:
            near(r["ttft_s"] * 1e3, 200, 60, "TTFT (ms)")

    def request_rate():
        FAKE.reset(ttft=0.02, itl=0.01)
        out_json = os.path.join(TMP, "rate.json")
        bench(url, "--request-rate", "5", "--concurrency", "8", "--num-prompts", "8", "--output-len", "2",
              "--seed", "7", "--json", out_json, "--no-progress")
        j = load(out_json)
        assert j["settings"]["request_rate"] == 5 and j["levels"][0]["request_rate"] == 5
        starts = sorted(r["start_s"] for r in j["levels"][0]["requests"])
        assert starts[0] < 0.05 and starts[-1] > 0.3, f"Poisson arrivals at 5 req/s: {starts}"

    def bad_args():
        for args, needle in ((["--concurrency", "1,x"], "--concurrency"), (["--request-rate", "-1"], "--request-rate"),
                             (["--scenario", "nope"], "--scenario"), (["--dataset", "/nonexistent.jsonl"], "--dataset"),
                             (["--dataset-name", "sharegpt"], "--dataset-path"),
                             (["--dataset-name", "random", "--dataset-path", "x.json"], "--dataset-path"),
                             (["--dataset-name", "nope"], "--dataset-name"),
                             (["--scenario", "prefix", "--save-result"], "--save-result")):
            rc, _, err = bench(url, "--model", "m", *args, ok=False)
            assert rc != 0 and needle in err, (args, err)

    def scenarios_pass():
        FAKE.reset(ttft=0.05, itl=0.02, cold_ttft=0.5, cached_ttft=0.01, long_threshold=500, long_ttft=0.4)
        out_json = os.path.join(TMP, "scen.json")
        _, out, _ = bench(url, "--scenario", "all", "--num-prompts", "16", "--input-len", "8", "--output-len", "4",
                          "--prefix-len", "200", "--prefix-decode-tokens", "40", "--long-prompt-len", "600",
                          "--stream-tokens", "2000", "--json", out_json, "--no-progress", timeout=180)
        for name in ("throughput", "prefix", "chunked-prefill"):
            assert re.search(rf"^PASS {name}: .* = [0-9.]+ \(target (>=|<=) [0-9.]+\)$", out, re.M), out
        j = load(out_json)
        sc = {s["name"]: s for s in j["scenarios"]}
        assert set(sc) == {"throughput", "prefix", "chunked-prefill"}, sc.keys()
        assert all(s["pass"] and s["note"] == "" for s in sc.values()), sc
        assert sc["throughput"]["ratio"] > 6 and sc["throughput"]["target"] == 6
        assert [lv["concurrency"] for lv in sc["throughput"]["details"]["levels"]] == [1, 16]
        p = sc["prefix"]["details"]
        assert abs(p["system_prompt_tokens"] - 200) <= 4, p["system_prompt_tokens"]
        assert p["third_overlapped_first_decode"], p
        near(p["ttft_first_ms"], 500, 100, "prefix first TTFT (ms)")
        assert p["ttft_second_ms"] < 50 and p["ttft_third_ms"] < 50, p
        assert "internlm_prefix_cache_hits_total 5" in out, out
        c = sc["chunked-prefill"]["details"]
        near(c["long_ttft_ms"], 400, 100, "long prompt TTFT (ms)")
        near(c["window_s"], 0.4, 0.1, "prefill window (s)")
        assert c["long_prompt_tokens"] == 600, c["long_prompt_tokens"]
        assert len(c["streams"]) == 4 and all(s.get("cancelled") for s in c["streams"]), c["streams"]
        near(c["itl_window_ms"]["median"], 20, 10, "stream ITL median (ms)")
        # System prompts of the prefix scenario are fresh per run (seed from the clock).
        systems = {b["messages"][0]["content"] for pth, b in FAKE.requests if pth.endswith("chat/completions")}
        assert len(systems) == 1, len(systems)
        time.sleep(0.3)
        assert FAKE.disconnects >= 4, f"cancelled streams should close their connections ({FAKE.disconnects})"

    def scenarios_fail():
        # No prefix cache, streams stall during the long prefill, throughput does not scale.
        FAKE.reset(ttft=0.05, itl=0.02, cold_ttft=0.3, cached_ttft=0.3, long_threshold=500, long_ttft=0.5,
                   long_stalls=True)
        _, out, _ = bench(url, "--scenario", "prefix", "--prefix-len", "50", "--prefix-decode-tokens", "30",
                          "--no-progress")
        assert re.search(r"^FAIL prefix: .*\(target <= 0.1\)$", out, re.M), out
        _, out, _ = bench(url, "--scenario", "chunked-prefill", "--input-len", "8", "--long-prompt-len", "600",
                          "--stream-tokens", "2000", "--no-progress")
        m = re.search(r"^FAIL chunked-prefill: .* = ([0-9.]+) \(target <= 4\)$", out, re.M)
        assert m and float(m.group(1)) > 4, out

    for name, fn in (("metrics match known delays", metrics_math), ("output tokens from usage", usage_not_chunks),
                     ("early stops reported", early_stop), ("failures counted with status and body", failures),
                     ("warm-up failure stops the run", warmup_failure), ("unreachable server", unreachable),
                     ("api key", api_key),
                     ("dataset: chat and completions", dataset_chat), ("Poisson request rate", request_rate),
                     ("bad arguments", bad_args), ("scenarios pass", scenarios_pass),
                     ("scenarios fail", scenarios_fail)):
        check(name, fn)
    srv.shutdown()

    check("against internlm serve (tiny model)", real_server)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


VLLM_KEYS = ("date backend model_id num_prompts request_rate max_concurrency duration completed failed "
             "total_input_tokens total_output_tokens request_throughput output_throughput total_token_throughput "
             "input_lens output_lens ttfts itls generated_texts errors").split() + [
    f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "std", "p99")]


def vllm_flags(url):
    """`vllm bench serve`'s flag names and result file, against the real server."""
    res_dir = os.path.join(TMP, "vllm-results")
    shutil.rmtree(res_dir, ignore_errors=True)
    out_json = os.path.join(TMP, "vllm-random.json")
    bench(url, "--dataset-name", "random", "--random-input-len", "16", "--random-output-len", "6",
          "--max-concurrency", "2", "--num-prompts", "4", "--request-rate", "inf", "--ignore-eos", "--save-result",
          "--result-dir", res_dir, "--json", out_json, "--no-progress", url_flag="--base-url", timeout=60)
    s = load(out_json)["settings"]
    assert s["seed"] == 0 and s["ignore_eos"] and s["input_len"] == 16 and s["concurrency"] == [2], s
    files = os.listdir(res_dir)
    assert len(files) == 1 and re.fullmatch(r"openai-infqps-concurrency2-tiny-\d{8}-\d{6}\.json", files[0]), files
    v = load(os.path.join(res_dir, files[0]))
    missing = [k for k in VLLM_KEYS if k not in v]
    assert not missing, missing
    assert v["completed"] == 4 and v["num_prompts"] == 4 and v["max_concurrency"] == 2 and v["request_rate"] == "inf", v
    assert v["output_lens"] == [6] * 4 and v["input_lens"] == [16] * 4, v  # ignore_eos: every reply runs to 6
    assert v["errors"] == [""] * 4 and all(t > 0 for t in v["ttfts"]) and len(v["itls"]) == 4, v
    assert all(isinstance(t, str) for t in v["generated_texts"]) and v["total_output_tokens"] == 24, v
    assert v["mean_ttft_ms"] > 0 and v["p99_e2el_ms"] >= v["median_e2el_ms"] > 0, v

    # ShareGPT: first turn = prompt, max_tokens = the reference reply's token count (server /tokenize).
    sg = os.path.join(TMP, "sharegpt.json")
    convs = [{"conversations": [{"from": "human", "value": "Tell me about the sea, please. " * k},
                                {"from": "gpt", "value": "The sea is big and blue and deep. " * k}]} for k in range(1, 7)]
    convs.append({"conversations": [{"from": "human", "value": "one turn only"}]})
    with open(sg, "w") as f:
        json.dump(convs, f)
    result = os.path.join(TMP, "sharegpt-result.json")
    out_json = os.path.join(TMP, "vllm-sharegpt.json")
    bench(url, "--dataset-name", "sharegpt", "--dataset-path", sg, "--num-prompts", "3", "--max-concurrency", "1",
          "--warmup", "0", "--save-result", "--result-filename", result, "--json", out_json, "--no-progress",
          timeout=60)
    reqs = load(out_json)["levels"][0]["requests"]
    assert len(reqs) == 3 and all(8 <= r["max_tokens"] <= 60 for r in reqs), [r["max_tokens"] for r in reqs]
    v = load(result)
    assert v["completed"] == 3 and all(n >= 8 for n in v["input_lens"]), v


def real_server():
    helptext = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=30).stdout.decode()
    if "not yet available" in helptext or "--port" not in helptext:
        print("skip: internlm serve is not built yet")
        return
    deadline = time.monotonic() + 90
    model = os.path.join(TMP, "tiny")
    subprocess.run([BIN, "synth", "--preset", "tiny", "--seed", "5", "--out", model], check=True,
                   capture_output=True, timeout=60)
    log = open(os.path.join(TMP, "serve.log"), "wb")  # a file: a full stderr pipe would block the server
    server = subprocess.Popen([BIN, "serve", "--model", model, "--port", "0", "--max-seqs", "16"],
                              stdout=subprocess.PIPE, stderr=log)
    try:
        port = None
        lines = []
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            m = re.search(r"http://[0-9.]+:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, f"serve printed no address: {lines}"
        url = f"http://127.0.0.1:{port}"
        out_json = os.path.join(TMP, "real.json")
        _, out, _ = bench(url, "--concurrency", "1,4", "--num-prompts", "4", "--input-len", "32", "--output-len", "8",
                          "--json", out_json, "--no-progress", timeout=max(5, deadline - time.monotonic()))
        j = load(out_json)
        assert j["server"]["model"] == "tiny", j["server"]  # the first id of /v1/models
        for lv in j["levels"]:
            assert lv["completed"] == 4 and lv["failed"] == 0, lv["errors"]
            assert lv["ttft_ms"]["median"] > 0 and lv["output_throughput"] > 0, lv
            for r in lv["requests"]:
                assert r["usage_reported"] and 1 <= r["output_tokens"] <= 8 and r["prompt_tokens"] == 32, r
        out_json = os.path.join(TMP, "real-scen.json")
        _, out, _ = bench(url, "--scenario", "all", "--num-prompts", "16", "--input-len", "16", "--output-len", "8",
                          "--prefix-len", "300", "--prefix-decode-tokens", "64", "--long-prompt-len", "500",
                          "--stream-tokens", "2000", "--json", out_json, "--no-progress",
                          timeout=max(5, deadline - time.monotonic()))
        for name in ("throughput", "prefix", "chunked-prefill"):
            assert re.search(rf"^(PASS|FAIL) {name}: ", out, re.M), out
        for sc in load(out_json)["scenarios"]:
            assert "fail" not in sc["note"], (sc["name"], sc["note"])  # no failed request, whatever the timing
            assert sc["ratio"] == sc["ratio"], sc  # not NaN
        print("\n".join(l for l in out.splitlines() if l.startswith(("PASS", "FAIL"))))
        vllm_flags(url)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
