#!/usr/bin/env python3
"""`internlm serve` over raw HTTP (http.client and sockets, 127.0.0.1 only) on a tiny synthetic
checkpoint: hostile inputs (each followed by a good request that must still succeed), usage
counts, stop strings, concurrent greedy streams equal to the same requests alone, client
disconnects freeing their sequences, arbitrary token sequences (temperature 2 on random
weights: byte-fallback and special tokens) giving valid UTF-8 JSON events, queue full (429),
API keys, and SIGTERM while a request streams. Run by ctest with INTERNLM_BIN and
INTERNLM_TEST_TMP set; every loop is bounded in count and time. With INTERNLM_TEST_TP=2 (ctest
py.test_serve_http_tp2) the same tests run against `mpirun -np 2 internlm serve --tp 2`."""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from harness import RESULTS, chat, check

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")

HOST = "127.0.0.1"
CTX = 4096  # --max-model-len
TP = int(os.environ.get("INTERNLM_TEST_TP", "1"))
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "serve_http" + (f"_tp{TP}" if TP > 1 else ""))


def rank_pids(marker):
    """{rank: pid} of the mpirun ranks whose INTERNLM_TP_TEST_MARK is `marker` (tells a test's job apart)."""
    pids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0]
        except OSError:
            continue
        if env.get(b"INTERNLM_TP_TEST_MARK") == marker.encode() and b"OMPI_COMM_WORLD_RANK" in env \
                and cmd.endswith(b"internlm"):
            pids[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(d)
    return pids


class Server:
    """A running `internlm serve`; the port comes from its "listening on" line (--port 0)."""

    def __init__(self, model, *extra):
        self.log = open(os.path.join(TMP, f"server-{time.time_ns()}.log"), "wb")
        self.marker = f"{os.getpid()}-{time.time_ns()}"  # INTERNLM_TP_TEST_MARK of its ranks: finds them
        args = ["serve", "--model", model, "--port", "0", "--threads", "1" if TP > 1 else "2",
                "--max-model-len", str(CTX), *extra]
        if TP > 1:  # INTERNLM_TEST_TP=N: the same server as `mpirun -np N internlm serve --tp N`
            cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(TP), BIN, *args, "--tp", str(TP)]
            env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "INTERNLM_TP_TEST_MARK": self.marker}
        else:
            cmd, env = [BIN, *args], None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env)
        deadline = time.time() + 60
        line = b""
        while time.time() < deadline and b"\n" not in line:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1)
                if not b:
                    break
                line += b
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(m.group(1))

    def conn(self, timeout=60):
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = self.conn(timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def post(self, path, body, headers=None, expect=200):
        status, hdrs, data = self.request("POST", path, body, headers)
        j = json.loads(data.decode("utf-8"))
        assert status == expect, f"{path}: {status} {data[:300]!r}"
        return j

    def stream(self, path, body, on_event=None):
        """POSTs a streaming request; returns the JSON events (checking each is UTF-8 JSON) and
        whether [DONE] came last. on_event(i, event) may return False to stop reading."""
        c = self.conn()
        c.request("POST", path, body=json.dumps({**body, "stream": True}).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read()[:300])
        assert r.getheader("Content-Type", "").startswith("text/event-stream")
        events, done, buf = [], False, b""
        while True:
            line = r.readline()
            if not line:
                break
            if line != b"\n":
                buf += line
                continue
            assert buf.startswith(b"data: ") and buf.endswith(b"\n"), buf[:200]
            payload = buf[6:-1]
            buf = b""
            assert not done, "event after [DONE]"
            if payload == b"[DONE]":
                done = True
                continue
            ev = json.loads(payload.decode("utf-8"))  # strict UTF-8: raises on any invalid byte
            events.append(ev)
            if on_event and on_event(len(events) - 1, ev) is False:
                break
        c.close()
        return events, done

    def metric(self, name):
        _, _, data = self.request("GET", "/metrics")
        m = re.search(rb"^" + re.escape(name.encode()) + rb"(?:\{[^}]*\})? (\S+)$", data, re.M)
        return float(m.group(1)) if m else None

    def rank_pids(self):
        """Under mpirun: {rank: pid} of this server's ranks."""
        return rank_pids(self.marker)

    def terminate(self):
        """SIGTERM to serve itself (under mpirun: to rank 0; mpirun would SIGKILL a long drain)."""
        if TP > 1:
            os.kill(self.rank_pids()[0], signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if TP > 1:
            for pid in self.rank_pids().values():  # mpirun killed: its ranks may linger
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.log.close()


def stream_text(events):
    """Per choice index: concatenated text, finish_reason (chat or completions chunks)."""
    text, finish = {}, {}
    for ev in events:
        for ch in ev.get("choices", []):
            i = ch["index"]
            piece = ch["delta"].get("content") if "delta" in ch else ch.get("text")
            text[i] = text.get(i, "") + (piece or "")
            if ch.get("finish_reason"):
                assert i not in finish, f"two finish_reasons for choice {i}"
                finish[i] = ch["finish_reason"]
    return text, finish


def fresh_tiny_model(tmp, seed):
    """Empties `tmp` and writes the tiny synthetic checkpoint there; returns its path."""
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model = os.path.join(tmp, "tiny")
    subprocess.run([BIN, "synth", "--preset", "tiny", "--seed", str(seed), "--out", model], check=True,
                   capture_output=True, timeout=120)
    return model


def main():
    model = fresh_tiny_model(TMP, 11)
    # f32 K/V: the echo test compares prompt logprobs with `internlm logits` (1e-4).
    srv = Server(model, "--max-body-mb", "1", "--max-seqs", "16", "--kv-cache-dtype", "f32")
    try:
        run_all(srv, model)
    finally:
        srv.stop()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


def run_all(srv, model):
    good = chat("hello", max_tokens=4, temperature=0)

    def assert_good():
        j = srv.post("/v1/chat/completions", good)
        assert j["choices"][0]["message"]["role"] == "assistant"

    def basics():
        status, _, data = srv.request("GET", "/health")
        assert status == 200, data
        j = json.loads(srv.request("GET", "/v1/models")[2])
        assert [m["id"] for m in j["data"]] == ["tiny"], j  # the checkpoint dir's name
        j = srv.post("/v1/chat/completions", chat("hi", max_tokens=5, temperature=0, model="tiny"))
        assert j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-"), j
        assert j["model"] == "tiny" and isinstance(j["created"], int)
        ch = j["choices"][0]
        assert ch["index"] == 0 and ch["finish_reason"] in ("stop", "length"), ch

    def hostile_inputs():
        def expect_error(status, body=None, method="POST", path="/v1/chat/completions", param=None, code=None,
                         needles=(), headers=None):
            st, hdrs, data = srv.request(method, path, body, headers)
            assert st == status, f"{body!r:.80}: expected {status}, got {st}: {data[:200]!r}"
            err = json.loads(data.decode("utf-8"))["error"]
            assert err["message"] and err["type"], err
            if param:
                assert err["param"] == param, err
            if code:
                assert err["code"] == code, err
            for n in needles:
                assert n in err["message"], (n, err["message"])
            assert_good()

        expect_error(400, b"{not json")
        expect_error(400, b"")
        expect_error(400, b"[1, 2, 3]")
        expect_error(400, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
        expect_error(400, b'{"messages": [{"role": "user", "content": "\\ud800"}]}')
        expect_error(400, b"[" * 200000 + b"]" * 200000)  # deep nesting must not overflow the stack
        expect_error(400, b"{" * 100000)
        expect_error(400, {"messages": []}, param="messages")
        expect_error(400, {"messages": "hi"}, param="messages")
        expect_error(400, {"messages": [{"role": "user", "content": 5}]}, param="messages[0].content")
        expect_error(400, chat("x", temperature="hot"), param="temperature")
        expect_error(400, chat("x", max_tokens=-1), param="max_tokens")
        expect_error(400, chat("x", n=1000), param="n")
        expect_error(400, chat("x", stop=[1, 2]), param="stop")
        expect_error(400, chat("x", top_p=7))
        expect_error(404, chat("x", model="gpt-4o"), param="model", code="model_not_found")
        expect_error(400, chat("x", max_tokens=CTX + 5), needles=(str(CTX), str(CTX + 5)))
        long_prompt = list(range(1000, 1000 + CTX + 10))
        expect_error(400, {"prompt": long_prompt, "max_tokens": 1}, path="/v1/completions",
                     needles=(str(CTX), str(CTX + 10)))
        expect_error(400, {"prompt": [5, 10 ** 9]}, path="/v1/completions", param="prompt")
        expect_error(413, b'{"prompt": "' + b"a" * (1536 * 1024) + b'"}', path="/v1/completions")
        expect_error(404, None, method="GET", path="/v1/nothing", code="not_found")
        expect_error(404, None, method="GET", path="/v1/chat/completions")
        expect_error(404, None, method="GET", path="/v1/models/other", code="model_not_found")
        # Not HTTP at all, a truncated body, and a connection dropped mid-headers.
        for raw in (b"\x00\x01garbage\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"prompt\": ", b"POST /v1/comp"):
            s = socket.create_connection((HOST, srv.port), timeout=10)
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(4096)
            except OSError:
                pass
            s.close()
            assert_good()

    def usage_counts():
        msgs = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "count: 1 2 3"}]
        n_prompt = srv.post("/tokenize", {"messages": msgs})["count"]
        j = srv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 9, "temperature": 0,
                                              "logprobs": True, "top_logprobs": 2})
        u, ch = j["usage"], j["choices"][0]
        assert u["prompt_tokens"] == n_prompt, (u, n_prompt)
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
        content = ch["logprobs"]["content"]
        if ch["finish_reason"] == "length":
            assert u["completion_tokens"] == 9 == len(content), (u, len(content))
        else:  # ended by a stop id: counted, but has no text of its own
            assert u["completion_tokens"] == len(content) + 1 <= 9, (u, len(content))
        for e in content:
            assert len(e["top_logprobs"]) == 2 and isinstance(e["bytes"], list), e
            assert e["logprob"] <= 0
        # Completions: a batch of prompts, n=2 each -> 4 choices in order; prompt tokens once each.
        p = ["one", "two three"]
        n_tok = sum(srv.post("/tokenize", {"prompt": s})["count"] for s in p)
        j = srv.post("/v1/completions", {"prompt": p, "n": 2, "max_tokens": 3, "temperature": 0, "logprobs": 1})
        assert [c["index"] for c in j["choices"]] == [0, 1, 2, 3], j["choices"]
        assert j["choices"][0]["text"] == j["choices"][1]["text"]  # greedy: both choices alike
        assert j["usage"]["prompt_tokens"] == n_tok, (j["usage"], n_tok)
        lp = j["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == len(lp["top_logprobs"])

    def stop_strings():
        base = srv.post("/v1/completions", {"prompt": "The answer is", "max_tokens": 24, "temperature": 0})
        text = base["choices"][0]["text"]
        assert len(text) >= 6, text
        # A stop string from the middle of the greedy text: everything before its first
        # occurrence comes back, never the stop string itself.
        stop = text[len(text) // 2: len(text) // 2 + 3]
        cut = text.find(stop)
        for body in ({"prompt": "The answer is", "max_tokens": 24, "temperature": 0, "stop": [stop, "\x00never"]},):
            j = srv.post("/v1/completions", body)
            ch = j["choices"][0]
            assert ch["text"] == text[:cut] and ch["finish_reason"] == "stop", (ch, text, stop)
            assert j["usage"]["completion_tokens"] <= base["usage"]["completion_tokens"]
            events, done = srv.stream("/v1/completions", body)
            t, f = stream_text(events)
            assert done and t[0] == text[:cut] and f[0] == "stop", (t, f, text, stop)
        # A stop string that never appears changes nothing.
        j = srv.post("/v1/completions", {"prompt": "The answer is", "max_tokens": 24, "temperature": 0,
                                         "stop": "\x01zz"})
        assert j["choices"][0]["text"] == text

    def streaming_chat_with_usage():
        body = chat("stream please", max_tokens=6, temperature=0, n=2, stream_options={"include_usage": True},
                    logprobs=True, top_logprobs=1)
        events, done = srv.stream("/v1/chat/completions", body)
        assert done
        assert all(e["object"] == "chat.completion.chunk" for e in events)
        assert {e["choices"][0]["delta"].get("role") for e in events[:2]} == {"assistant"}, events[:2]
        assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0, events[-1]
        assert all("usage" in e and e["usage"] is None for e in events[:-1])
        t, f = stream_text(events)
        assert set(f) == {0, 1} and t[0] == t[1], (t, f)
        whole = srv.post("/v1/chat/completions", chat("stream please", max_tokens=6, temperature=0))
        assert whole["choices"][0]["message"]["content"] == t[0]
        assert events[-1]["usage"]["completion_tokens"] == 2 * whole["usage"]["completion_tokens"]
        n_lp = sum(len(ch["logprobs"]["content"]) for e in events for ch in e["choices"] if ch.get("logprobs"))
        assert n_lp >= 2, n_lp

    def concurrent_greedy_streams_match_solo():
        prompts = [f"request number {i}: {'abc ' * (i % 5)}" for i in range(16)]
        bodies = [chat(p, max_tokens=12, temperature=0) for p in prompts]
        solo = []
        for b in bodies:
            ev, done = srv.stream("/v1/chat/completions", b)
            assert done
            solo.append(stream_text(ev))
        results = [None] * len(bodies)

        def worker(i):
            try:
                ev, done = srv.stream("/v1/chat/completions", bodies[i])
                results[i] = stream_text(ev) if done else "no [DONE]"
            except Exception as e:  # noqa: BLE001
                results[i] = repr(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, (a, b) in enumerate(zip(solo, results)):
            assert a == b, f"request {i}: alone {a!r}, concurrent {b!r}"

    def sixty_four_connections_at_once():
        # More connections than sequences: the rest wait in the engine's queue, none is refused
        # (the listen backlog and the HTTP thread pool are sized for it).
        statuses = [None] * 64
        barrier = threading.Barrier(64, timeout=30)

        def worker(i):
            try:
                barrier.wait()
                st, _, data = srv.request("POST", "/v1/completions",
                                          {"prompt": f"p{i}", "max_tokens": 2, "temperature": 0})
                statuses[i] = st if st != 200 else len(json.loads(data)["choices"])
            except Exception as e:  # noqa: BLE001
                statuses[i] = repr(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
        t = time.time()
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert statuses == [1] * 64, statuses
        assert time.time() - t < 20

    def wait_running(pred, seconds=10):
        deadline = time.time() + seconds
        while time.time() < deadline:
            v = srv.metric("vllm:num_requests_running")
            if v is not None and pred(v):
                return v
            time.sleep(0.05)
        raise AssertionError(f"running sequences did not reach the expected value: {v}")

    def disconnect_frees_sequence():
        # Streaming: read a few events, then hang up.
        c = srv.conn()
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "go on and on", "max_tokens": CTX - 16, "temperature": 0, "stream": True}).encode())
        r = c.getresponse()
        for _ in range(3):
            assert r.readline()
        wait_running(lambda v: v >= 1)
        t = time.time()
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        wait_running(lambda v: v == 0)
        assert time.time() - t < 5
        # Non-streaming: the client gives up before the reply.
        s = socket.create_connection((HOST, srv.port), timeout=10)
        body = json.dumps({"prompt": "go on", "max_tokens": CTX - 16, "temperature": 0}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_running(lambda v: v >= 1)
        s.close()
        wait_running(lambda v: v == 0)
        assert_good()

    def arbitrary_tokens_stay_valid_utf8():
        # Random weights at temperature 2: any of the 92544 ids can come, byte-fallback pieces
        # (about 1 token in 600 here) and special tokens included. Every event must be strict
        # UTF-8 JSON and every choice must finish. 16 choices per request keep it cheap (they
        # share each step's weight reads).
        byte_tokens = 0
        for path, body in (
            ("/v1/completions", {"prompt": "x", "max_tokens": 160, "temperature": 2.0, "top_p": 1, "n": 16,
                                 "seed": 1, "logprobs": 0, "skip_special_tokens": False}),
            ("/v1/chat/completions", chat("y", max_tokens=160, temperature=2.0, top_p=1, n=16, seed=2,
                                          logprobs=True)),
        ):
            events, done = srv.stream(path, body)
            assert done, path
            text, finish = stream_text(events)
            assert set(finish) == set(range(16)), finish
            assert all(v in ("stop", "length") for v in finish.values()), finish
            for e in events:
                for ch in e["choices"]:
                    lp = ch.get("logprobs") or {}
                    byte_tokens += sum(1 for t in lp.get("tokens") or [] if t == "\ufffd")
                    byte_tokens += sum(1 for item in lp.get("content") or []
                                       if len(item["bytes"]) == 1 and item["bytes"][0] >= 0x80)
        assert byte_tokens > 0, "no byte-fallback token was sampled; the test lost its point"
        # The same seed gives the same text streamed or whole, U+FFFD placement included.
        for path, body in (("/v1/completions", {"prompt": "z", "max_tokens": 24, "temperature": 2.0, "seed": 5,
                                                "n": 2, "skip_special_tokens": False}),
                           ("/v1/chat/completions", chat("w", max_tokens=24, temperature=2.0, seed=6))):
            events, done = srv.stream(path, body)
            text, _ = stream_text(events)
            whole = srv.post(path, body)
            for ch in whole["choices"]:
                got = ch["message"]["content"] if "message" in ch else ch["text"]
                assert got == text[ch["index"]], (path, got, text[ch["index"]])

    def tokenize_roundtrip():
        j = srv.post("/tokenize", {"prompt": "héllo 世界"})
        assert j["count"] == len(j["tokens"]) and j["max_model_len"] == CTX, j
        d = srv.post("/detokenize", {"tokens": j["tokens"]})
        assert d["prompt"] == "<s>héllo 世界", d
        srv.post("/detokenize", {"tokens": "x"}, expect=400)

    def metrics_text():
        _, hdrs, data = srv.request("GET", "/metrics")
        text = data.decode()
        for name in ("internlm_http_requests_total", "vllm:time_to_first_token_seconds_bucket",
                     "vllm:time_per_output_token_seconds_count", "vllm:e2e_request_latency_seconds_sum",
                     "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total"):
            assert name in text, name
        assert 'endpoint="/v1/chat/completions",status="400"' in text
        assert srv.metric("vllm:generation_tokens_total") > 0

    def sampling_controls():
        def complete(**kw):
            return srv.post("/v1/completions", {"prompt": "The list:", "temperature": 0, **kw})

        def detok(ids):
            return srv.post("/detokenize", {"tokens": ids, "skip_special_tokens": True})["prompt"]

        forced = {"1000": 100}
        j = complete(max_tokens=3, logit_bias=forced)
        assert j["choices"][0]["text"] == detok([1000] * 3), j
        # logit_bias -100 on the greedy token moves the greedy choice.
        greedy = complete(max_tokens=1)["choices"][0]["text"]
        ids = srv.post("/tokenize", {"prompt": greedy, "add_special_tokens": False})["tokens"]
        assert len(ids) == 1, (greedy, ids)
        other = complete(max_tokens=1, logit_bias={str(ids[0]): -100})["choices"][0]["text"]
        assert other != greedy, (greedy, other)
        # stop_token_ids end the reply (the id is counted, not shown); min_tokens holds it back.
        j = complete(max_tokens=8, logit_bias=forced, stop_token_ids=[1000])
        assert j["choices"][0]["finish_reason"] == "stop" and j["choices"][0]["text"] == "", j
        assert j["usage"]["completion_tokens"] == 1, j["usage"]
        j = complete(max_tokens=8, logit_bias=forced, stop_token_ids=[1000], min_tokens=3)
        assert j["choices"][0]["finish_reason"] == "stop", j
        assert j["usage"]["completion_tokens"] == 4, j["usage"]
        # The model's end of turn ends a reply unless ignore_eos.
        eos = {"92542": 100}
        j = complete(max_tokens=4, logit_bias=eos)
        assert j["choices"][0]["finish_reason"] == "stop" and j["usage"]["completion_tokens"] == 1, j
        j = complete(max_tokens=4, logit_bias=eos, ignore_eos=True)
        assert j["choices"][0]["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 4, j
        st, _, data = srv.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2, "min_tokens": 3})
        assert st == 400 and json.loads(data)["error"]["param"] == "min_tokens", data
        st, _, data = srv.request("POST", "/v1/chat/completions", chat("x", logit_bias={"5": 300}))
        assert st == 400 and json.loads(data)["error"]["param"] == "logit_bias", data

    def echo_logprobs():
        """completions echo + logprobs: the prompt's logprobs are log-softmax of what
        `internlm logits` writes for the same ids (what lm-evaluation-harness relies on)."""
        import numpy as np
        ids = [1] + [1000 + (i * 7919) % 50000 for i in range(39)]  # 40 tokens: two scoring chunks
        body = {"prompt": ids, "echo": True, "logprobs": 2, "max_tokens": 2, "temperature": 0}
        j = srv.post("/v1/completions", body)
        ch = j["choices"][0]
        lp = ch["logprobs"]
        assert len(lp["tokens"]) == len(ids) + 2 == len(lp["token_logprobs"]) == len(lp["text_offset"]), lp
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, lp["token_logprobs"][:2]
        prompt_text = srv.post("/detokenize", {"tokens": ids, "skip_special_tokens": True})["prompt"]
        assert ch["text"].startswith(prompt_text) and len(ch["text"]) > len(prompt_text), (ch["text"], prompt_text)
        assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][len(ids)] == len(prompt_text)
        assert j["usage"]["prompt_tokens"] == len(ids) and j["usage"]["completion_tokens"] == 2, j["usage"]
        out = os.path.join(TMP, "echo_logits.f32")
        p = subprocess.run([BIN, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", out],
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
        logits = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)
        lsm = logits - logits.max(axis=1, keepdims=True)
        lsm -= np.log(np.exp(lsm).sum(axis=1, keepdims=True))
        for i in range(1, len(ids)):
            want = lsm[i - 1, ids[i]]
            got = lp["token_logprobs"][i]
            assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (i, got, want)
            assert len(lp["top_logprobs"][i]) >= 1, lp["top_logprobs"][i]
            assert abs(max(lp["top_logprobs"][i].values()) - lsm[i - 1].max()) <= 1e-4 * max(1.0, -lsm[i - 1].max())
        # The first generated token (greedy) is the last row's most likely one.
        assert abs(lp["token_logprobs"][len(ids)] - lsm[-1].max()) <= 1e-4 * max(1.0, -lsm[-1].max())
        # Streamed: the same text, the prompt first.
        events, done = srv.stream("/v1/completions", body)
        text, finish = stream_text(events)
        assert done and text[0] == ch["text"] and finish[0] == ch["finish_reason"], (text, ch["text"])
        first = next(e for e in events if e.get("choices"))
        assert first["choices"][0]["text"].startswith(prompt_text), first
        # echo without logprobs: text only; a string prompt echoes itself.
        j = srv.post("/v1/completions", {"prompt": "The list:", "echo": True, "max_tokens": 1, "temperature": 0})
        assert j["choices"][0]["text"].startswith("The list:") and j["choices"][0]["logprobs"] is None, j

    def structured_output():
        """response_format json_schema / json_object: at temperature 1 on random weights every
        reply parses and validates (python3-jsonschema), streamed or not, n = 2; unsupported
        keywords and malformed schemas are 400s naming the place."""
        import random
        import jsonschema
        rng = random.Random(5)

        def gen_schema(depth=0):
            kinds = ["string", "integer", "boolean", "null", "enum", "number"] + (["object", "array", "anyOf"] if depth < 2 else [])
            k = rng.choice(kinds)
            if k == "string":
                return {"type": "string", "maxLength": rng.randint(0, 12), **({"minLength": 1} if rng.random() < 0.3 else {})}
            if k == "integer":
                lo = rng.randint(-50, 50)
                return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 300)}
            if k == "enum":
                return {"enum": rng.sample(["red", "green", 7, None, True, "a b"], rng.randint(1, 4))}
            if k == "object":
                props = {f"p{i}_{rng.randint(0, 99)}": gen_schema(depth + 1) for i in range(rng.randint(1, 4))}
                req = [n for n in props if rng.random() < 0.6]
                return {"type": "object", "properties": props, "required": req, "additionalProperties": False}
            if k == "array":
                return {"type": "array", "items": gen_schema(depth + 1), "maxItems": rng.randint(0, 3)}
            if k == "anyOf":
                return {"anyOf": [gen_schema(depth + 1), gen_schema(depth + 1)]}
            return {"type": k}

        def check_reply(text, schema, where):
            try:
                jsonschema.validate(json.loads(text), schema)
            except (ValueError, jsonschema.ValidationError) as e:
                raise AssertionError(f"{where}: {e}\nschema {json.dumps(schema)}\nreply {text!r}") from None

        for i in range(50):
            schema = {"type": "object", "properties": {"item": gen_schema(), "n": {"type": "integer", "minimum": 0, "maximum": 9}},
                      "required": ["item", "n"], "additionalProperties": False}
            rf = {"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema, "strict": True}}
            j = srv.post("/v1/chat/completions", chat("answer", temperature=1.0, seed=i, max_tokens=1500, response_format=rf))
            ch = j["choices"][0]
            assert ch["finish_reason"] == "stop", (schema, ch)
            check_reply(ch["message"]["content"], schema, i)
        # Streamed, two choices, completions endpoint.
        schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 5},
                  "maxItems": 4}}, "required": ["a"], "additionalProperties": False}
        rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        events, done = srv.stream("/v1/completions", {"prompt": "x", "n": 2, "temperature": 1.2, "seed": 9, "max_tokens": 400,
                                                        "response_format": rf})
        text, finish = stream_text(events)
        assert done and set(text) == {0, 1} and finish == {0: "stop", 1: "stop"}, (text, finish)
        for t in text.values():
            check_reply(t, schema, "stream")
        # json_object bounds nothing, and random weights write long keys: closing quotes and
        # braces get a bias so that the reply ends well within max_tokens.
        close = {str(srv.post("/tokenize", {"prompt": c, "add_special_tokens": False})["tokens"][0]): 6 for c in ('"', "}")}
        j = srv.post("/v1/chat/completions", chat("x", temperature=1.0, seed=1, max_tokens=1500, logit_bias=close,
                                                  response_format={"type": "json_object"}))
        assert j["choices"][0]["finish_reason"] == "stop", j
        assert isinstance(json.loads(j["choices"][0]["message"]["content"]), dict), j
        # Refusals name the place.
        dup = {"$defs": {f"a{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/b{i + 1}"}]} for i in range(31)}}
        dup["$defs"].update({f"b{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/b{i + 1}"}]} for i in range(1, 31)})
        dup["$defs"].update({"a31": {"type": "string"}, "b31": {"type": "null"}})
        dup["$ref"] = "#/$defs/a0"
        for bad, where in ((dup, "anyOf"), ({"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}, "finite"),
                           ({"type": "string", "anyOf": [{"minLength": 1}]}, "/type"),
                           ({"type": "string", "pattern": "(a)\\1"}, "/pattern"), ({"type": "number", "multipleOf": 2}, "/multipleOf"),
                           ({"type": "string", "format": "email"}, "/format"),
                           ({"type": "object", "required": ["x"]}, "/required"), ({"$ref": "#/$defs/none"}, "/$ref"),
                           ({"type": "objekt"}, "/type")):
            st, _, data = srv.request("POST", "/v1/chat/completions",
                                      chat("x", response_format={"type": "json_schema", "json_schema": {"name": "b", "schema": bad}}))
            err = json.loads(data)["error"]
            assert st == 400 and err["param"] == "response_format.json_schema.schema" and where in err["message"], (bad, st, err)
        deep = b'{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", ' \
               b'"json_schema": {"name": "d", "schema": {"description": ' + b"[" * 100000 + b"]" * 100000 + b"}}}}"
        st, _, data = srv.request("POST", "/v1/chat/completions", deep, {"Content-Type": "application/json"})
        assert st == 400 and json.loads(data)["error"]["param"] == "response_format", (st, data[:200])
        for rf in ({"type": "yaml"}, {"type": "json_schema"}, "json", {"type": "json_schema", "json_schema": {"name": 3, "schema": {}}}):
            st, _, data = srv.request("POST", "/v1/chat/completions", chat("x", response_format=rf))
            assert st == 400 and json.loads(data)["error"]["param"].startswith("response_format"), (rf, st, data)
        assert_good()

    def tool_calls():
        """tools + tool_choice: "required" / a named function give one call of an offered
        function whose arguments validate, at temperature 1 on random weights, streamed or not
        (assembled deltas equal the whole reply at temperature 0); the action markers never
        reach the content ("auto" with a +100 bias on <|action_start|>), "none" bans them;
        a call/result round trip renders InternLM2's protocol; bad tools are 400s."""
        import jsonschema
        weather = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7},
                   "unit": {"enum": ["C", "F"]}}, "required": ["city", "days"], "additionalProperties": False}
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": weather}},
                 {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
                     "q": {"type": "string", "maxLength": 12}}, "required": ["q"], "additionalProperties": False}}},
                 {"type": "function", "function": {"name": "noop"}}]
        schemas = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "maxProperties": 0}) for t in tools}

        def check_call(call, names):
            assert call["type"] == "function" and call["id"].startswith("call_"), call
            assert call["function"]["name"] in names, call
            args = json.loads(call["function"]["arguments"])
            jsonschema.validate(args, schemas[call["function"]["name"]])

        seen = set()
        for i in range(8):
            j = srv.post("/v1/chat/completions", chat("weather?", tools=tools, tool_choice="required", temperature=1.0,
                                                      seed=i, max_tokens=400, n=2))
            for ch in j["choices"]:
                assert ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None, ch
                assert len(ch["message"]["tool_calls"]) == 1, ch
                check_call(ch["message"]["tool_calls"][0], schemas)
                seen.add(ch["message"]["tool_calls"][0]["function"]["name"])
        assert len(seen) >= 2, seen
        named = {"type": "function", "function": {"name": "get_weather"}}
        body = chat("weather?", tools=tools, tool_choice=named, temperature=0, max_tokens=400)
        whole = srv.post("/v1/chat/completions", body)["choices"][0]
        check_call(whole["message"]["tool_calls"][0], ["get_weather"])
        events, done = srv.stream("/v1/chat/completions", body)
        calls, finish = {}, None
        for ev in events:
            for ch in ev["choices"]:
                finish = ch["finish_reason"] or finish
                assert not ch["delta"].get("content"), ch
                for t in ch["delta"].get("tool_calls", []):
                    c = calls.setdefault(t["index"], {"arguments": ""})
                    if "id" in t:
                        assert "name" not in c and t["function"]["arguments"] == "" and t["type"] == "function", t
                        c.update(id=t["id"], name=t["function"]["name"])
                    c["arguments"] += t["function"]["arguments"]
        want = whole["message"]["tool_calls"][0]["function"]
        assert done and finish == "tool_calls" and len(calls) == 1, (calls, finish)
        assert calls[0]["name"] == want["name"] and calls[0]["arguments"] == want["arguments"], (calls, want)
        # Stop strings apply to the content, never to the call's markers or JSON.
        j = srv.post("/v1/chat/completions", {**body, "stop": ["\n", "{", "\""]})
        assert j["choices"][0]["finish_reason"] == "tool_calls", j
        assert j["choices"][0]["message"]["tool_calls"][0]["function"] == want, j

        # The markers never reach the content, also with skip_special_tokens false.
        start = srv.post("/tokenize", {"prompt": "<|action_start|>", "add_special_tokens": False})["tokens"]
        assert start == [92541], start
        for skip in (True, False):
            j = srv.post("/v1/chat/completions", chat("x", tools=tools, temperature=0, max_tokens=6, skip_special_tokens=skip,
                                                      logit_bias={"92541": 100}))
            assert "<|action" not in (j["choices"][0]["message"]["content"] or ""), j
        # "none": the marker is banned, whatever the bias.
        j = srv.post("/v1/chat/completions", chat("x", tools=tools, tool_choice="none", temperature=0, max_tokens=6,
                                                  skip_special_tokens=False, logit_bias={"92541": 100}, logprobs=True))
        toks = [t["token"] for t in j["choices"][0]["logprobs"]["content"]]
        assert "<|action_start|>" not in toks and "tool_calls" not in j["choices"][0]["message"], j

        # A call and its result in the history: InternLM2's protocol, token for token.
        history = [{"role": "system", "content": "S"}, {"role": "user", "content": "weather in Paris?"},
                   {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                       "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":1}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "22 C"}]
        j = srv.post("/v1/chat/completions", {"messages": history, "tools": tools[:1], "temperature": 0, "max_tokens": 4})
        assert j["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), j
        ids = srv.post("/tokenize", {"messages": history})["tokens"]
        text = srv.post("/detokenize", {"tokens": ids})["prompt"]
        assert text == ("<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\nweather in Paris?<|im_end|>\n"
                        "<|im_start|>assistant\n<|action_start|><|plugin|>\n{\"name\": \"get_weather\", \"parameters\": "
                        "{\"city\": \"Paris\", \"days\": 1}}<|action_end|><|im_end|>\n"
                        "<|im_start|>environment name=<|plugin|>\n22 C<|im_end|>\n<|im_start|>assistant\n"), text
        assert j["usage"]["prompt_tokens"] > len(ids), j  # the tools turn came too

        # Bad tools and choices: 400s naming the field; the server keeps serving.
        bad_params = [{"type": "function", "function": {"name": "f", "parameters": "object"}}]
        odd_schema = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "x": {"type": "string", "contentEncoding": "base64"}}}}}]
        for req, param in (
                (chat("x", tools=tools, tool_choice={"type": "function", "function": {"name": "absent"}}), "tool_choice.function.name"),
                (chat("x", tools=bad_params), "tools[0].function.parameters"),
                (chat("x", tools=odd_schema, tool_choice="required"), "tools"),
                (chat("x", tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools[0].function.name"),
                (chat("x", tools=tools + tools[:1]), "tools[3].function.name"),
                (chat("x", tool_choice="required"), "tool_choice"),
                (chat("x", tools=tools, tool_choice="sometimes"), "tool_choice"),
                (chat("x", tools="get_weather"), "tools"),
                ({"messages": history[:2] + [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
                    "name": "f", "arguments": "{oops"}}]}]}, "messages[2].tool_calls[0].function.arguments"),
                ({"prompt": "x", "tools": tools}, "tools"),
                (chat("x", tools=tools, tool_choice="required", stop_token_ids=[92540]), "stop_token_ids"),
                ({"messages": history[:2] + [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
                    "name": "f", "arguments": "[" * 30000 + "]" * 30000}}]}]}, "messages[2].tool_calls[0].function.arguments")):
            path = "/v1/completions" if "prompt" in req else "/v1/chat/completions"
            st, _, data = srv.request("POST", path, req)
            err = json.loads(data)["error"]
            assert st == 400 and err["param"] == param, (req, st, err)
        assert_good()

    check("basics", basics)
    check("logit_bias, stop_token_ids, min_tokens, ignore_eos", sampling_controls)
    check("completions echo + logprobs equal log-softmax of `internlm logits`", echo_logprobs)
    check("structured output: 50 generated schemas at temperature 1, streamed n=2, json_object, refusals",
          structured_output)
    check("tool calls: required / named constrained, streamed = whole, markers kept out, none bans, round trip, refusals",
          tool_calls)
    check("hostile inputs, each followed by a good request", hostile_inputs)
    check("usage counts", usage_counts)
    check("stop strings", stop_strings)
    check("streaming chat with usage, n=2, logprobs", streaming_chat_with_usage)
    check("16 concurrent greedy streams equal the same requests alone", concurrent_greedy_streams_match_solo)
    check("64 connections at once", sixty_four_connections_at_once)
    check("a client that disconnects frees its sequence", disconnect_frees_sequence)
    check("arbitrary token sequences: valid UTF-8 JSON events", arbitrary_tokens_stay_valid_utf8)
    check("tokenize / detokenize", tokenize_roundtrip)
    check("metrics", metrics_text)
    check("api key and queue full", lambda: auth_and_queue_full(model))
    check("SIGTERM while a request streams", lambda: sigterm_while_streaming(srv))


def auth_and_queue_full(model):
    s = Server(model, "--api-key", "sekret", "--max-seqs", "1", "--max-waiting", "1")
    try:
        body = chat("hi", max_tokens=2)
        auth = {"Authorization": "Bearer sekret"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            st, _, data = s.request("POST", "/v1/chat/completions", body, headers)
            assert st == 401, (headers, st, data)
            assert json.loads(data)["error"]["code"] == "invalid_api_key"
        assert s.request("GET", "/v1/models")[0] == 401
        # A refused request leaves its keep-alive connection usable for the next one.
        c = s.conn()
        for key, want in (("wrong", 401), ("sekret", 200), ("wrong", 401), ("sekret", 200)):
            c.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                      headers={"Authorization": f"Bearer {key}"})
            r = c.getresponse()
            r.read()
            assert r.status == want, (key, r.status)
        c.close()
        assert s.request("GET", "/health")[0] == 200
        s.post("/v1/chat/completions", body, auth)
        # One running, one waiting: the next request is refused with 429 and Retry-After.
        long = {"prompt": "x", "max_tokens": 2000, "temperature": 0, "stream": True}
        conns = []
        for want in (("vllm:num_requests_running", 1), ("vllm:num_requests_waiting", 1)):
            c = s.conn()
            c.request("POST", "/v1/completions", body=json.dumps(long).encode(), headers=auth)
            conns.append(c)
            # Poll until seen once (not seen, then read again: the gauges follow the engine's
            # steps); generous, since CI runs this next to other heavy tests on 2 cores.
            deadline = time.time() + 30
            seen = s.metric(want[0])
            while seen != want[1] and time.time() < deadline:
                time.sleep(0.05)
                seen = s.metric(want[0])
            assert seen == want[1], (want, seen, s.request("GET", "/metrics")[2].decode()[-1500:])
        st, hdrs, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2}, auth)
        assert st == 429, (st, data)
        assert "Retry-After" in hdrs and json.loads(data)["error"]["message"]
        for c in conns:
            c.close()
    finally:
        s.stop()


def sigterm_while_streaming(srv):
    c = srv.conn()
    c.request("POST", "/v1/chat/completions",
              body=json.dumps(chat("last one", max_tokens=60, temperature=0, stream=True)).encode())
    r = c.getresponse()
    assert r.readline().startswith(b"data: ")
    srv.terminate()
    rest = r.read()  # the stream runs to its end
    c.close()
    assert rest.rstrip().endswith(b"data: [DONE]"), rest[-200:]
    assert b'"finish_reason":"length"' in rest or b'"finish_reason":"stop"' in rest
    rc = srv.proc.wait(20)
    assert rc == 0, rc


if __name__ == "__main__":
    sys.exit(main())
