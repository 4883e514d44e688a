#!/usr/bin/env python3
"""`internlm serve` as operators deploy it, on a tiny synthetic checkpoint (127.0.0.1 only):
vLLM's metric names on /metrics, CORS (preflight before auth, headers on every response, SSE
included), SSE keep-alive comments on a stream queued behind a long request, the access log
(X-Request-Id echoed, sanitized, bodies never logged, JSON lines, --disable-log-requests), API
keys (repeated flag, key file, INTERNLM_API_KEY), the positional model, the refusal to serve
without one, `--model demo`, vLLM's flag aliases, --chat-template, and /health 503 while the model loads. Run
by ctest with INTERNLM_BIN and INTERNLM_TEST_TMP set; every wait is bounded."""
import http.client
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time

from harness import RESULTS, chat, check

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "serve_ops")
HOST = "127.0.0.1"
CTX = 4096


class Server:
    """A running `internlm serve`; the port comes from its "listening on" line (--port 0).
    `model` None: the model is given in `extra` (positional, --model demo, ...)."""

    def __init__(self, model, *extra, env=None):
        self.log_path = os.path.join(TMP, f"server-{time.time_ns()}.log")
        self.log = open(self.log_path, "wb")
        args = [BIN, "serve"] + (["--model", model] if model else []) + \
            ["--port", "0", "--threads", "2", "--max-model-len", str(CTX), *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.stdout = b""
        deadline = time.time() + 90
        while time.time() < deadline and b"\n" not in self.stdout:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = self.proc.stdout.read1(4096)
                if not b:
                    break
                self.stdout += b
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", self.stdout)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {self.stdout!r} {self.stderr()[-2000:]}")
        self.port = int(m.group(1))

    def stderr(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def synth(path, preset="tiny"):
    if not os.path.exists(os.path.join(path, "config.json")):
        subprocess.run([BIN, "synth", "--preset", preset, "--seed", "3", "--out", path], check=True,
                       capture_output=True, timeout=300)
    return path


def wait_for(pred, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric_samples(text):
    """name -> list of (labels dict, value)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def test_metrics(model):
    srv = Server(model, "--served-model-name", "ops-model")
    try:
        srv.request("POST", "/v1/chat/completions", chat("hi", max_tokens=3, temperature=0))
        # n = 2: two choices, one request.
        st, _, data = srv.request("POST", "/v1/completions",
                                  {"prompt": "abc", "max_tokens": 4, "n": 2, "ignore_eos": True, "temperature": 0})
        assert st == 200, data
        _, hdrs, data = srv.request("GET", "/metrics")
        assert hdrs["content-type"].startswith("text/plain"), hdrs
        text = data.decode()
        s = metric_samples(text)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                     "vllm:prefix_cache_hits_total", "vllm:request_success_total",
                     "vllm:time_to_first_token_seconds_bucket", "vllm:time_to_first_token_seconds_count",
                     "vllm:time_per_output_token_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket",
                     "vllm:e2e_request_latency_seconds_sum", "vllm:request_prompt_tokens_bucket",
                     "vllm:request_generation_tokens_bucket", "internlm_http_requests_total"):
            assert name in s, name
            if name.startswith("vllm:"):
                for labels, _ in s[name]:
                    assert labels.get("model_name") == "ops-model" and labels.get("engine") == "0", (name, labels)
        for t in ("gauge", "counter", "histogram"):
            assert f"# TYPE vllm:" in text and f" {t}\n" in text
        assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
        assert "# TYPE vllm:prompt_tokens_total counter" in text
        success = {l["finished_reason"]: v for l, v in s["vllm:request_success_total"]}
        assert set(success) >= {"stop", "length", "abort"}, success
        assert sum(success.values()) == 2, success  # requests, not choices
        assert success["length"] >= 1, success
        (_, count), = s["vllm:e2e_request_latency_seconds_count"]
        assert count == 2, count
        (_, gen), = s["vllm:generation_tokens_total"]
        assert gen >= 8, gen
        (_, usage), = s["vllm:kv_cache_usage_perc"]
        assert 0 <= usage <= 1, usage
        les = [l["le"] for l, _ in s["vllm:time_to_first_token_seconds_bucket"]]
        assert les[:3] == ["0.001", "0.005", "0.01"] and les[-1] == "+Inf", les
        for gone in ("internlm_sequences_running", "internlm_time_to_first_token_seconds", "internlm_kv_cache_usage_ratio"):
            assert gone not in s and gone + "_count" not in s, gone
    finally:
        srv.stop()


def test_cors_and_keys(model):
    keyfile = os.path.join(TMP, "keys.txt")
    with open(keyfile, "w") as f:
        f.write("# ops keys\nkey-from-file\n\n")
    env = {**os.environ, "INTERNLM_API_KEY": "key-from-env"}
    srv = Server(model, "--api-key", "key-one", "--api-key", "key-two", "--api-key-file", keyfile,
                 "--allowed-origins", "https://app.example,https://other.example", env=env)
    try:
        def auth(k):
            return {"Authorization": f"Bearer {k}"}

        for k in ("key-one", "key-two", "key-from-file", "key-from-env"):
            st, _, data = srv.request("GET", "/v1/models", headers=auth(k))
            assert st == 200, (k, st, data)
        for k in ("key-thre", "key-onex", "", "key-from-fil"):
            st, _, _ = srv.request("GET", "/v1/models", headers=auth(k) if k else {})
            assert st == 401, (k, st)
        # Preflight: answered before authentication.
        st, h, _ = srv.request("OPTIONS", "/v1/chat/completions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
        assert st == 204, st
        assert h.get("access-control-allow-origin") == "https://app.example", h
        assert "POST" in h.get("access-control-allow-methods", ""), h
        assert "x-stainless-os" in h.get("access-control-allow-headers", "").lower(), h
        assert int(h.get("access-control-max-age", "0")) > 0, h
        assert "Origin" in h.get("vary", ""), h
        # On answers, errors included, for an allowed Origin; never for another.
        for headers, want in (({"Origin": "https://other.example", **auth("key-one")}, 200),
                              ({"Origin": "https://other.example"}, 401)):
            st, h, _ = srv.request("GET", "/v1/models", headers=headers)
            assert st == want, st
            assert h.get("access-control-allow-origin") == "https://other.example", h
            assert "Origin" in h.get("vary", ""), h
        st, h, _ = srv.request("GET", "/v1/models", headers={"Origin": "https://evil.example", **auth("key-one")})
        assert st == 200 and "access-control-allow-origin" not in h and "Origin" in h.get("vary", ""), h
        # SSE.
        c = http.client.HTTPConnection(HOST, srv.port, timeout=60)
        c.request("POST", "/v1/chat/completions", body=json.dumps(chat("x", max_tokens=3, stream=True)).encode(),
                  headers={"Origin": "https://app.example", **auth("key-two")})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") == "https://app.example"
        assert b"data: [DONE]" in r.read()
        c.close()
        log = srv.stderr() + srv.stdout.decode()
        for k in ("key-one", "key-two", "key-from-file", "key-from-env"):
            assert k not in log, f"{k} printed"
        assert "api_keys=4" in log, log[-2000:]
    finally:
        srv.stop()


def test_keepalive(model):
    srv = Server(model, "--max-seqs", "1", "--sse-keepalive-seconds", "1")
    long_conn = None
    try:
        # The long request holds the only slot; the second stream waits in the queue.
        long_conn = socket.create_connection((HOST, srv.port), timeout=60)
        body = json.dumps({"prompt": "x", "max_tokens": CTX - 16, "ignore_eos": True, "stream": True}).encode()
        long_conn.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert long_conn.recv(4096).startswith(b"HTTP/1.1 200"), "long request not started"
        c = http.client.HTTPConnection(HOST, srv.port, timeout=30)
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "y", "max_tokens": 2, "stream": True}).encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        comments, t0 = 0, time.time()
        first = r.readline()
        assert first == b": keep-alive\n", first  # nothing else can come while the slot is taken
        comments = 1
        while comments < 2 and time.time() - t0 < 20:
            line = r.readline()
            if line == b": keep-alive\n":
                comments += 1
            else:
                assert line == b"\n", line  # the comment's blank line
        assert comments >= 2, comments
        long_conn.close()  # frees the slot: the waiting stream now completes
        long_conn = None
        rest = r.read()
        assert b"data: [DONE]" in rest, rest[-300:]
        c.close()
    finally:
        if long_conn:
            long_conn.close()
        srv.stop()


def test_access_log(model):
    srv = Server(model)
    try:
        secret = "never-log-this-body-7731"
        st, h, data = srv.request("POST", "/v1/chat/completions", chat(secret, max_tokens=3),
                                  headers={"X-Request-Id": "ops-req-1"})
        assert st == 200 and h.get("x-request-id") == "ops-req-1", h
        assert json.loads(data)["id"] == "chatcmpl-ops-req-1", data
        st, h, _ = srv.request("GET", "/v1/models", headers={"X-Request-Id": "a b<c>\"d" + "e" * 500})
        assert st == 200 and h.get("x-request-id") == "abcd" + "e" * 124, h["x-request-id"]
        st, h, _ = srv.request("GET", "/nope")
        assert st == 404 and re.fullmatch(r"[0-9a-f]{32}", h.get("x-request-id", "")), h
        generated = h["x-request-id"]
        # A line is written after its response went out: wait for both.
        log = wait_for(lambda: (lambda t: t if generated in t and "request_id=ops-req-1" in t else None)(srv.stderr()),
                       10, "the access log lines")
        line = next(l for l in log.splitlines() if "request_id=ops-req-1" in l)
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} info request ", line), line
        for part in ("method=POST", "path=/v1/chat/completions", "status=200", "client=127.0.0.1",
                     "prompt_tokens=", "completion_tokens=3", "ttft_ms=", "total_ms="):
            assert part in line, (part, line)
        assert re.search(r"request_id=" + generated + r" .*status=404", log), log[-1000:]
        assert secret not in log
    finally:
        srv.stop()
    # JSON lines, and no access log with --disable-log-requests.
    srv = Server(model, "--log-format", "json", "--log-level", "debug", "--disable-log-requests")
    try:
        st, h, _ = srv.request("GET", "/v1/models", headers={"X-Request-Id": "quiet-1"})
        assert st == 200 and h["x-request-id"] == "quiet-1"
        time.sleep(0.3)
        lines = [l for l in srv.stderr().splitlines() if l.startswith("{")]
        assert lines, srv.stderr()
        objs = [json.loads(l) for l in lines]
        for o in objs:
            assert {"time", "level", "msg"} <= set(o), o
        assert any(o["msg"] == "ready" and o.get("max_seqs") for o in objs), objs
        assert not any(o["msg"] == "request" for o in objs), objs
    finally:
        srv.stop()
    # --log-level warning silences info lines (the access log too).
    srv = Server(model, "--log-level", "warning")
    try:
        srv.request("GET", "/v1/models")
        time.sleep(0.3)
        assert " info " not in srv.stderr(), srv.stderr()
    finally:
        srv.stop()


def test_model_selection(model):
    # Positional, as `vllm serve MODEL`, with vLLM's flag names.
    srv = Server(None, model, "--max-num-seqs", "2", "--no-enable-prefix-caching",
                 "--max-num-batched-tokens", "64", "--uvicorn-log-level", "info")
    try:
        st, _, data = srv.request("GET", "/v1/models")
        assert st == 200 and json.loads(data)["data"][0]["id"] == os.path.basename(model), data
        log = srv.stderr()
        assert "max_seqs=2" in log and "prefix_cache=false" in log and "kv_cache_dtype=bf16" in log, log
    finally:
        srv.stop()
    # No model: refused, saying how to get the demo model; nothing listens.
    p = subprocess.run([BIN, "serve", "--port", "0"], capture_output=True, timeout=60)
    assert p.returncode != 0 and b"--model demo" in p.stderr and b"listening" not in p.stdout, p
    # Two different models: refused.
    p = subprocess.run([BIN, "serve", model, "--model", model + "-other", "--port", "0"], capture_output=True,
                       timeout=60)
    assert p.returncode != 0 and b"two models" in p.stderr, p.stderr
    # --model demo: the built-in synthetic checkpoint (here under a test directory).
    env = {**os.environ, "INTERNLM_DEFAULT_MODEL": os.path.join(TMP, "demo-model")}
    srv = Server(None, "--model", "demo", env=env)
    try:
        st, _, data = srv.request("POST", "/v1/chat/completions", chat("hi", max_tokens=2))
        assert st == 200, data
    finally:
        srv.stop()


VARIANT_TEMPLATE = """{{ bos_token -}}
{% for message in messages %}
    {% if loop.first and message['role'] == 'assistant' %}
        {{- raise_exception('the first message must not be the assistant\\'s') }}
    {% endif %}
    {% if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\\nDefault prompt.<|im_end|>\\n' -}}
    {% endif %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
{% endfor %}
{% if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' -}}
{% endif %}
"""


def test_chat_template(model):
    """--chat-template FILE (template text or tokenizer_config-style JSON) changes what /tokenize
    and chat requests render; a template outside the supported subset stops serve at startup."""
    raw = os.path.join(TMP, "variant.jinja")
    with open(raw, "w", encoding="utf-8") as f:
        f.write(VARIANT_TEMPLATE)
    as_json = os.path.join(TMP, "variant_config.json")
    with open(as_json, "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "chat_template": VARIANT_TEMPLATE}, f)
    user = {"messages": [{"role": "user", "content": "hi"}]}
    with_system = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}

    def tokenize(srv, body):
        st, _, data = srv.request("POST", "/tokenize", body)
        assert st == 200, data
        return json.loads(data)["tokens"]

    def text_ids(srv, text):
        return tokenize(srv, {"prompt": text, "add_special_tokens": False})

    for path in (raw, as_json):
        srv = Server(model, "--chat-template", path)
        try:
            got = tokenize(srv, user)
            want = text_ids(srv, "<s><|im_start|>system\nDefault prompt.<|im_end|>\n"
                                 "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
            assert got == want and got.count(1) == 1 and got[0] == 1, (got, want)
            builtin = text_ids(srv, "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
            assert got != builtin
            # A system turn given: the template adds none (the built-in rendering).
            got = tokenize(srv, {**with_system, "add_generation_prompt": False})
            assert got == text_ids(srv, "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"), got
            # Chat requests use it too; raise_exception is a 400 with the template's message.
            st, _, data = srv.request("POST", "/v1/chat/completions", chat("hi", max_tokens=1))
            assert st == 200 and json.loads(data)["usage"]["prompt_tokens"] == len(want), data
            st, _, data = srv.request("POST", "/v1/chat/completions",
                                      {"messages": [{"role": "assistant", "content": "x"}], "max_tokens": 1})
            assert st == 400 and "must not be the assistant's" in json.loads(data)["error"]["message"], data
            assert "chat template loaded" in srv.stderr()
        finally:
            srv.stop()
    # Without the flag: the built-in template.
    srv = Server(model)
    try:
        assert tokenize(srv, user) == text_ids(srv, "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    finally:
        srv.stop()
    # Outside the subset, or no such file: refused before serving, naming the construct's position.
    bad = os.path.join(TMP, "bad.jinja")
    with open(bad, "w", encoding="utf-8") as f:
        f.write("{{ bos_token }}\n{% for m in messages %}{{ m['content'] | upper }}{% endfor %}")
    p = subprocess.run([BIN, "serve", model, "--port", "0", "--chat-template", bad], capture_output=True, timeout=60)
    assert p.returncode != 0 and b"listening" not in p.stdout, p
    assert b"unsupported filter 'upper'" in p.stderr and b"line 2, column 42" in p.stderr, p.stderr
    p = subprocess.run([BIN, "serve", model, "--port", "0", "--chat-template", os.path.join(TMP, "missing.jinja")],
                       capture_output=True, timeout=60)
    assert p.returncode != 0 and b"no such file" in p.stderr, p.stderr


def test_health_while_loading(big_model):
    """The port opens before the model loads: /health and every route answer 503 until ready."""
    log_path = os.path.join(TMP, "loading.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([BIN, "serve", big_model, "--port", "0", "--threads", "1", "--quant", "int4"],
                            stdout=subprocess.PIPE, stderr=log)
    try:
        def port_line():
            m = re.search(r"port open, loading the model url=http://127\.0\.0\.1:(\d+)",
                          open(log_path, encoding="utf-8", errors="replace").read())
            return int(m.group(1)) if m else None
        port = wait_for(port_line, 60, "the port-open line")
        seen = []
        deadline = time.time() + 120
        while time.time() < deadline:
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            c.request("GET", "/health")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 503:
                assert json.loads(body) == {"status": "loading"}, body
                if not seen:
                    c = http.client.HTTPConnection(HOST, port, timeout=10)
                    c.request("POST", "/v1/completions", body=b'{"prompt": "x"}')
                    r2 = c.getresponse()
                    err = json.loads(r2.read())
                    assert r2.status == 503 and err["error"]["code"] == "model_loading", err
                    c.close()
            seen.append(r.status)
            if r.status == 200:
                break
            time.sleep(0.02)
        assert seen and seen[-1] == 200, seen
        assert seen[0] == 503, f"the model loaded before the first probe: {seen}"
        text = open(log_path, encoding="utf-8", errors="replace").read()
        assert "loading the model" in text and "model loaded" in text, text
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


def test_long_context_start_line(model):
    # A 32k checkpoint with dynamic NTK (factor 2) serves 64k: --max-model-len 65536 is taken as
    # is, past it is capped with a warning; the ready line reports the KV dtype, the bytes per
    # token and the tokens of context the pool holds.
    ntk = os.path.join(TMP, "tiny-32k-ntk")
    subprocess.run([BIN, "synth", "--preset", "tiny", "--seed", "3", "--max-position-embeddings", "32768",
                    "--rope-scaling", "dynamic:2", "--out", ntk], check=True, capture_output=True, timeout=300)
    global CTX
    default_ctx = CTX
    for asked, got in ((65536, 65536), (100000, 65536)):
        CTX = asked  # the --max-model-len Server passes
        try:
            srv = Server(ntk, "--kv-cache-dtype", "int8", "--kv-cache-gb", "0.05", "--log-format", "json")
        finally:
            CTX = default_ctx
        try:
            ready = wait_for(lambda: next((o for o in (json.loads(l) for l in srv.stderr().splitlines()
                                                       if l.startswith("{")) if o["msg"] == "ready"), None),
                             10, "the ready line")
            assert ready["max_model_len"] == got and ready["kv_cache_dtype"] == "int8", ready
            assert ready["kv_bytes_per_token"] == 2 * 2 * (2 * 32 + 4 * 2), ready  # 2 layers, K+V, int8 + scales
            blocks = int(0.05 * 2**30 / (ready["kv_bytes_per_token"] * ready["block_size"]))
            assert ready["max_concurrent_context_tokens"] == blocks * ready["block_size"], ready
            warned = any("beyond the model's context limit" in l for l in srv.stderr().splitlines())
            assert warned == (asked > got), srv.stderr()
        finally:
            srv.stop()


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    model = synth(os.path.join(TMP, "tiny"))
    check("vLLM metric names with model_name, requests counted once", lambda: test_metrics(model))
    check("CORS preflight and headers; several API keys, key file, env key", lambda: test_cors_and_keys(model))
    check("SSE keep-alive comments on a stream queued behind a long request", lambda: test_keepalive(model))
    check("access log, X-Request-Id, JSON lines, --disable-log-requests", lambda: test_access_log(model))
    check("positional model, no-model refusal, --model demo, vLLM aliases", lambda: test_model_selection(model))
    check("--chat-template FILE: a variant template changes /tokenize and chat prompts", lambda: test_chat_template(model))
    check("--max-model-len 65536 on a 32k dynamic-NTK checkpoint; KV figures in the ready line",
          lambda: test_long_context_start_line(model))
    big = synth(os.path.join(TMP, "small"), "small")
    check("/health 503 while the model loads", lambda: test_health_while_loading(big))
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
