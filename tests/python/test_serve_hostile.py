#!/usr/bin/env python3
"""`internlm serve` against hostile and careless clients (raw sockets, 127.0.0.1 only), on a tiny
synthetic checkpoint: trickling heads and bodies and idle connections must not delay a legitimate
request; heads past their caps get 431 and cost no memory; bodies past the cap get 413 before
they are sent; control characters in field values and bad chunked framing get 400; pipelined
requests are all answered in order; slow heads are closed at their deadline; the per-client
connection cap makes room for a new connection. Run by ctest with INTERNLM_BIN and
INTERNLM_TEST_TMP set; every loop is bounded in count and time."""
import json
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from test_serve_http import HOST, RESULTS, Server, chat, check, fresh_tiny_model  # noqa: E402

TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "serve_hostile")


def read_to_close(s):
    """Everything the server sends until it closes the connection (or resets it)."""
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        out += b
    return out


def raw(port, data, timeout=10, read_all=True):
    """Sends bytes on a new connection; returns everything the server sends until it closes
    (or the first response when read_all is False)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(data)
        if read_all:
            return read_to_close(s)
        out = b""
        while b"\r\n\r\n" not in out or len(out.partition(b"\r\n\r\n")[2]) < content_length(out):
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def content_length(resp):
    head = resp.partition(b"\r\n\r\n")[0]
    n = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return n[0] if n else 0


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else None


def error_of(resp):
    body = resp.partition(b"\r\n\r\n")[2]
    return json.loads(body)["error"]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


GOOD = json.dumps(chat("hi", max_tokens=2, temperature=0)).encode()


def post_bytes(path, body, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def timed_models(srv):
    t = time.time()
    st, _, data = srv.request("GET", "/v1/models", timeout=10)
    return st, time.time() - t


def slow_clients(srv):
    """Idle connections, heads sent a byte at a time and bodies slower than their length,
    all held open together: a legitimate request is still answered within a second."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n_idle = min(1024, (hard - 200) // 2)
    socks, stop = [], threading.Event()
    try:
        for _ in range(n_idle):
            socks.append(socket.create_connection((HOST, srv.port), timeout=10))
        trickle_heads = [socket.create_connection((HOST, srv.port), timeout=10) for _ in range(64)]
        trickle_bodies = [socket.create_connection((HOST, srv.port), timeout=10) for _ in range(64)]
        for s in trickle_bodies:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"

        def trickle():
            i = 0
            while not stop.is_set() and i < len(head) - 4:
                for s in trickle_heads:
                    try:
                        s.send(head[i:i + 1])
                    except OSError:
                        pass
                for s in trickle_bodies:
                    try:
                        s.send(b" ")
                    except OSError:
                        pass
                i += 1
                stop.wait(0.1)

        t = threading.Thread(target=trickle)
        t.start()
        time.sleep(1.0)
        worst = 0.0
        for _ in range(5):
            st, dt = timed_models(srv)
            assert st == 200, st
            worst = max(worst, dt)
        assert worst < 1.0, f"a legitimate GET /v1/models took {worst:.2f}s"
        j = srv.post("/v1/chat/completions", json.loads(GOOD))
        assert j["choices"][0]["message"]["role"] == "assistant"
        stop.set()
        t.join()
        socks += trickle_heads + trickle_bodies
    finally:
        stop.set()
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def head_deadline(port):
    """A head still incomplete at --head-timeout (1 s here) is answered 408 and closed."""
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
    t = time.time()
    out = read_to_close(s)
    s.close()
    dt = time.time() - t
    assert 0.5 < dt < 3.0, dt
    assert status_of(out) == 408, out[:200]
    assert error_of(out)["code"] == "request_timeout"
    # A connection that sends nothing is closed at the same deadline, without an answer.
    s = socket.create_connection((HOST, port), timeout=10)
    t = time.time()
    assert s.recv(100) == b""
    assert time.time() - t < 3.0
    s.close()


def head_caps(srv):
    resp = raw(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert status_of(resp) == 431, resp[:200]
    assert "64" in error_of(resp)["message"] or "65536" in error_of(resp)["message"], error_of(resp)
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(101))
    resp = raw(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert status_of(resp) == 431, resp[:200]
    # A flood of huge heads: each is cut at the cap, and the server's memory stays put.
    before = rss_kb(srv.proc.pid)

    def flood():
        try:
            s = socket.create_connection((HOST, srv.port), timeout=10)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            line = b"X-Pad: " + b"b" * 8000 + b"\r\n"
            for _ in range(3400):  # ~27 MB, unless the server closes first
                s.sendall(line)
        except OSError:
            pass

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    grew = (rss_kb(srv.proc.pid) - before) / 1024
    assert grew < 64, f"resident memory grew by {grew:.0f} MiB"
    assert srv.request("GET", "/health")[0] == 200


def body_cap(port):
    """--max-body-mb 1: a 2 MiB Content-Length is refused from the head alone."""
    out = raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
    assert status_of(out) == 413, out[:200]
    assert error_of(out)["code"] == "request_too_large"
    # Chunked uploads are held to the same cap.
    chunk = b"%x\r\n" % (600 * 1024) + b"a" * (600 * 1024) + b"\r\n"
    resp = raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
    assert status_of(resp) == 413, resp[:200]


def bad_fields(port):
    for head in (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer KEY\x00garbage\r\n\r\n",
                 b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
                 b"GET /v1/models HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                 b"GET /v1/models HTTP/1.1\r\nHost : x\r\n\r\n",
                 b"GET /v1/models HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 b"GET  /v1/models HTTP/1.1\r\n\r\n"):
        resp = raw(port, head)
        assert status_of(resp) == 400, (head, resp[:200])
        assert error_of(resp)["message"]
    assert status_of(raw(port, b"GET /v1/models HTTP/2.0\r\n\r\n")) == 505
    assert status_of(raw(port, b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")) == 501


def chunked(port):
    body = GOOD
    good = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
            b"%x;ext=1\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
    resp = raw(port, good)
    assert status_of(resp) == 200, resp[:300]
    bad = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n")
    resp = raw(port, bad)
    assert status_of(resp) == 400, resp[:300]
    assert "CRLF" in error_of(resp)["message"]


def pipelining(port):
    two = post_bytes("/v1/chat/completions", GOOD) + b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = raw(port, two)
    parts = resp.split(b"HTTP/1.1 ")
    statuses = [int(p[:3]) for p in parts if p[:3].isdigit()]
    assert statuses == [200, 200], resp[:400]
    assert resp.index(b'"chat.completion"') < resp.index(b'"object":"list"'), resp[:600]


def gate_metrics(srv):
    """The gate's own answers and closed connections are counted in /metrics."""
    for name in ("internlm_http_connections_open", "internlm_http_connections_accepted_total",
                 "internlm_http_requests_refused_total", "internlm_http_connections_timed_out_total"):
        v = srv.metric(name)
        assert v is not None, name
    assert srv.metric("internlm_http_requests_refused_total") >= 5  # the 431s, 413s and 400s above
    assert srv.metric("internlm_http_connections_accepted_total") > 1000  # the slow-client flood


def expect_continue(port):
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
              b"Content-Length: " + str(len(GOOD)).encode() + b"\r\n\r\n")
    first = s.recv(100)
    assert first.startswith(b"HTTP/1.1 100"), first
    s.sendall(GOOD)
    out = read_to_close(s)
    s.close()
    assert b"HTTP/1.1 200" in (first + out), (first + out)[:300]


def per_client_cap(s):
    if True:
        idle = [socket.create_connection((HOST, s.port), timeout=10) for _ in range(8)]
        time.sleep(0.2)
        st, dt = timed_models(s)
        assert st == 200 and dt < 1.0, (st, dt)
        # The oldest idle connection made room: the server closed it.
        idle[0].settimeout(3)
        assert idle[0].recv(10) == b""
        for c in idle:
            c.close()


def odd_requests(srv):
    """Multipart bodies get 415 (not 500), Range headers are ignored on API routes, and a
    non-streaming chat request without max_tokens is bounded by --max-tokens-default (3 here)."""
    boundary = b"XyZ"
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ntiny\r\n--XyZ--\r\n")
    resp = raw(srv.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\nContent-Length: " +
               str(len(body)).encode() + b"\r\n\r\n" + body)
    assert status_of(resp) == 415, resp[:300]
    assert error_of(resp)["message"]
    st, _, data = srv.request("GET", "/v1/models", headers={"Range": "bytes=0-1"})
    assert st == 200 and json.loads(data)["object"] == "list", (st, data[:200])
    j = srv.post("/v1/chat/completions", chat("count to one hundred", temperature=0, max_tokens=None))
    assert j["usage"]["completion_tokens"] <= 3, j["usage"]


def huge_prompts_release_memory(srv):
    """7 MB prompts (far past the 4,096-token context): refused with 400, one, then three in a
    row, then four at once; resident memory peaks < 256 MiB above the start and is back within
    64 MiB of it 5 s later."""
    pid = srv.proc.pid
    srv.post("/v1/chat/completions", json.loads(GOOD))  # warm: buffers of a normal request exist
    start = rss_kb(pid)
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    big = json.dumps(chat("hello world, " * (7 * 1024 * 1024 // 13))).encode()

    def one():
        st, _, data = srv.request("POST", "/v1/chat/completions", big, {"Content-Type": "application/json"})
        assert st == 400, (st, data[:200])
        assert b"maximum context length" in data, data[:300]

    try:
        one()
        for _ in range(3):
            one()
        errors = []
        ts = [threading.Thread(target=lambda: errors.append(None) if one() else None) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    finally:
        done.set()
        sampler.join()
    time.sleep(5)
    end = rss_kb(pid)
    grew, left = (peak[0] - start) / 1024, (end - start) / 1024
    print(f"     RSS start {start / 1024:.0f} MiB, peak +{grew:.0f} MiB, +{left:.0f} MiB after 5 s")
    assert grew < 256, f"peak resident growth {grew:.0f} MiB"
    assert left < 64, f"resident growth left after 5 s: {left:.0f} MiB"


def main():
    model = fresh_tiny_model(TMP, 12)
    import test_serve_http
    test_serve_http.TMP = TMP  # the servers' logs go here too
    srv = Server(model, "--max-body-mb", "1")
    try:
        check("slow, idle and trickling clients do not delay a legitimate request", lambda: slow_clients(srv))
        check("head size and field caps: 431, memory bounded", lambda: head_caps(srv))
        check("body cap: 413 from the head", lambda: body_cap(srv.port))
        check("control characters and malformed fields: 400", lambda: bad_fields(srv.port))
        check("chunked bodies: valid accepted, missing CRLF refused", lambda: chunked(srv.port))
        check("pipelined requests answered in order", lambda: pipelining(srv.port))
        check("Expect: 100-continue", lambda: expect_continue(srv.port))
        check("still serving after all of it", lambda: srv.post("/v1/chat/completions", json.loads(GOOD)))
        check("gate counters in /metrics", lambda: gate_metrics(srv))
    finally:
        srv.stop()
    strict = Server(model, "--max-connections-per-client", "8", "--head-timeout", "1", "--max-tokens-default", "3")
    try:
        check("multipart 415, Range ignored, --max-tokens-default", lambda: odd_requests(strict))
        check("7 MB prompts: refused, memory returned", lambda: huge_prompts_release_memory(strict))
        check("head deadline: 408, then closed", lambda: head_deadline(strict.port))
        check("per-client connection cap makes room", lambda: per_client_cap(strict))
    finally:
        strict.stop()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
