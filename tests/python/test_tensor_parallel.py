#!/usr/bin/env python3
"""Tensor parallelism (`--tp N` under mpirun): the ranks of `mpirun -np 2 internlm ... --tp 2`
give the logits of one process (`--tp 1`) within 1e-5 relative on the exact path, and the same
greedy generation, on tiny checkpoints (bf16 and int4, single-file and sharded, dynamic NTK
active); over TCP too, and across two hosts (two network namespaces joined by a veth pair,
where root may create them); a rank killed mid-run ends the job non-zero within 10 s. `serve --tp 2`
gives the replies of a one-process `serve` (greedy, concurrent, streaming, n = 2, prefix-cache
hits), keeps serving while idle past the collective timeout, drains and ends every rank on
SIGTERM, and ends non-zero within 10 s, the client cut off, when rank 1 dies mid-stream. Exits
77 (skipped) when mpirun is absent or the binary was built without MPI."""
import array
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

from harness import RESULTS, chat, check
from test_serve_http import Server, rank_pids, stream_text

BIN = os.path.abspath(os.environ.get("INTERNLM_BIN", "build/internlm"))
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "tensor_parallel")
MPIRUN = shutil.which("mpirun")
# CI runs as root on 2 cores: allow root, more ranks than cores, one thread per rank.
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_rmaps_base_oversubscribe": "1"}
# 40 ids with max_position_embeddings 16: dynamic NTK is active (the base grows with length).
IDS = ",".join(str(1 + (i * 7919) % 90000) for i in range(40))


def sh(args, ok=True, timeout=600, env=None):
    p = subprocess.run(args, capture_output=True, timeout=timeout, env=env or ENV)
    if ok and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr.decode(errors='replace')[-3000:]}")
    return p


def mpi(n, *args, mca=(), prefix=()):
    return [*prefix, MPIRUN, "--oversubscribe", "--bind-to", "none", *mca, "-np", str(n), BIN, *args]


def read_f32(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def rel_err(a, b):
    assert len(a) == len(b), f"sizes differ: {len(a)} vs {len(b)}"
    scale = max(abs(x) for x in a)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def logits_args(model, out, *extra):
    return ["logits", "--model", model, "--ids", IDS, "--prefill", "24", "--precision", "exact", "-t", "1",
            "--out", out, *extra]


def exact_kernel_set():
    out = sh([BIN, "--version"]).stdout.decode()
    return re.search(r"(\S+) with --precision exact", out).group(1)


def compare_logits(model, name, extra=(), mca=(), quantized=False, prefix=()):
    one, two = os.path.join(TMP, name + "-tp1.f32"), os.path.join(TMP, name + "-tp2.f32")
    sh([BIN, *logits_args(model, one, *extra)])
    sh(mpi(2, *logits_args(model, two, "--tp", "2", *extra), mca=mca, prefix=prefix))
    a, b = read_f32(one), read_f32(two)
    err = rel_err(a, b)
    # f32 arithmetic: 1e-5. The avx512vnni exact set carries the activations of quantized
    # weights in two int8 levels scaled per token row (~2e-5 kernel error, backend/cpu/kernels.h):
    # a rank scales its own slice of the row (w2's input), so the bound is that error's.
    bound = 1e-4 if quantized and exact_kernel_set() == "avx512vnni" else 1e-5
    assert err <= bound, f"--tp 2 logits differ from --tp 1 by {err:.3g} relative (bound {bound:g})"
    # The reduction order is fixed: a second run gives the same bits.
    sh(mpi(2, *logits_args(model, two + ".again", "--tp", "2", *extra), mca=mca, prefix=prefix))
    assert read_f32(two + ".again") == b, "two --tp 2 runs gave different logits"


# Two "hosts": two network namespaces joined by a veth pair (addresses made up, only inside
# them). mpirun runs in the first; its launcher (plm_rsh_agent, ssh's place) starts the remote
# daemon in the namespace of the host it is given; the ranks talk TCP over the veth pair.
AGENT = """#!/bin/sh
while [ "${1#-}" != "$1" ]; do shift; done  # ssh-style options before the host
host=$1; shift
case "$host" in %(b_addr)s) ns=%(b)s ;; *) ns=%(a)s ;; esac
exec ip netns exec "$ns" /bin/sh -c "$*"
"""


def two_hosts(model):
    tag = os.getpid() % 250
    a, b = f"ilm{os.getpid()}a", f"ilm{os.getpid()}b"
    a_addr, b_addr, net = f"10.231.{tag}.1", f"10.231.{tag}.2", f"10.231.{tag}.0/24"
    ip = ["ip"]
    try:
        for cmd in (["netns", "add", a], ["netns", "add", b],
                    ["link", "add", a[-12:], "type", "veth", "peer", "name", b[-12:]],
                    ["link", "set", a[-12:], "netns", a], ["link", "set", b[-12:], "netns", b],
                    ["-n", a, "addr", "add", a_addr + "/24", "dev", a[-12:]],
                    ["-n", b, "addr", "add", b_addr + "/24", "dev", b[-12:]],
                    ["-n", a, "link", "set", a[-12:], "up"], ["-n", b, "link", "set", b[-12:], "up"],
                    ["-n", a, "link", "set", "lo", "up"], ["-n", b, "link", "set", "lo", "up"]):
            sh(ip + cmd, env=os.environ)
        agent, hosts = os.path.join(TMP, "netns-agent.sh"), os.path.join(TMP, "netns-hosts")
        with open(agent, "w") as f:
            f.write(AGENT % {"a": a, "b": b, "b_addr": b_addr})
        os.chmod(agent, 0o755)
        with open(hosts, "w") as f:
            f.write(f"{a_addr} slots=1\n{b_addr} slots=1\n")
        mca = ("--hostfile", hosts, "--map-by", "node", "--mca", "plm_rsh_agent", agent,
               "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", net, "--mca", "oob_tcp_if_include", net)
        prefix = ("ip", "netns", "exec", a)
        # The ranks really are in the two namespaces.
        where = sh([*prefix, MPIRUN, "--oversubscribe", "--bind-to", "none", *mca, "-np", "2", "sh", "-c",
                    "echo $OMPI_COMM_WORLD_RANK $(readlink /proc/self/ns/net)"], timeout=60).stdout.decode().split()
        ns = dict(zip(where[0::2], where[1::2]))
        want = {r: sh(["ip", "netns", "exec", n, "readlink", "/proc/self/ns/net"], env=os.environ).stdout.decode().strip()
                for r, n in (("0", a), ("1", b))}
        assert ns == want, f"ranks in {ns}, namespaces {want}"
        compare_logits(model, "two-hosts", mca=mca, prefix=prefix)
    finally:
        for n in (a, b):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def netns_usable():
    probe = f"ilm{os.getpid()}probe"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok and shutil.which("ip") is not None


def run_args(model, *extra):
    return ["run", "--model", model, "--prompt", "The quick brown fox jumps over the lazy dog, again and again",
            "--temperature", "0", "--max-tokens", "24", "--precision", "exact", "-t", "1", "-q", *extra]


def compare_run(model, extra=()):
    a = sh([BIN, *run_args(model, *extra)]).stdout
    b = sh(mpi(2, *run_args(model, "--tp", "2", *extra))).stdout
    assert a == b and a.strip(), f"greedy output differs: {a!r} vs {b!r}"


def killed_rank(model, sig):
    marker = f"{os.getpid()}-{sig}"
    env = {**ENV, "INTERNLM_TP_TEST_MARK": marker, "INTERNLM_TP_TIMEOUT": "5"}
    args = ["run", "--model", model, "--prompt", "a", "--temperature", "0", "--max-tokens", "30000",
            "--max-model-len", "30000", "-t", "1", "-q", "--tp", "2"]
    p = subprocess.Popen(mpi(2, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 60
        pids = {}
        while time.time() < deadline and len(pids) < 2:
            pids = rank_pids(marker)
            time.sleep(0.2)
        assert len(pids) == 2, f"ranks not found: {pids}"
        time.sleep(3)  # loaded and decoding
        assert p.poll() is None, "the run ended before a rank could be killed (make it longer)"
        os.kill(pids[1], sig)
        t = time.time()
        rc = p.wait(timeout=15)
        took = time.time() - t
        err = p.stderr.read().decode(errors="replace")
        assert rc != 0, f"job exited 0 after rank 1 got signal {sig}"
        assert took <= 10, f"job took {took:.1f} s to end after rank 1 got signal {sig}"
        assert "rank 1" in err, f"the message does not name rank 1: {err[-2000:]!r}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in rank_pids(marker).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def bench_tp(model):
    """bench --tp 2: rank 0's report adds each rank's weight bytes per decode token, the bytes
    reduced per token and the share of tg step time in collectives. Bytes reduced per token
    (rank 0's sends): per layer two sums of hidden floats, of which a rank sends the other
    rank's half in the reduce-scatter and its own half of the result in the all-gather:
    2 x layers x hidden x 4 bytes at N = 2. Rank 0 is the root of the logits gather, so it sends
    none of it; plan broadcasts are not counted."""
    import json  # noqa: PLC0415 - local to these checks
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    layers, hidden = cfg["num_hidden_layers"], cfg["hidden_size"]
    args = ["bench", "--model", model, "-t", "1", "-p", "8", "-n", "4", "-r", "1"]
    j = json.loads(sh(mpi(2, *args, "--tp", "2", "--json")).stdout)
    one = json.loads(sh([BIN, *args, "--json"]).stdout)
    tp = j["tensor_parallel"]
    assert "tensor_parallel" not in one, "one process reports tensor_parallel"
    assert tp["ranks"] == 2 and tp["tg_tokens_timed"] == 4, tp
    assert tp["bytes_reduced_per_token"] == 2 * layers * hidden * 4, \
        f"{tp['bytes_reduced_per_token']} bytes reduced per token, the shape implies {2 * layers * hidden * 4}"
    assert 0 < tp["collective_seconds_share"] < 1, tp["collective_seconds_share"]
    per = tp["per_rank"]
    assert len(per) == 2 and all(r["weight_bytes_per_token"] > 0 and r["rss_bytes"] > 0 and
                                 r["peak_rss_bytes"] >= r["rss_bytes"] for r in per), per
    assert per[0]["weight_bytes_per_token"] == tp["rank0_weight_bytes_per_token"]
    assert tp["total_weight_bytes_per_token"] == sum(r["weight_bytes_per_token"] for r in per)
    # The shards: each rank reads less than one process, together at least as much (the
    # embedding row and the norms are replicated) and not much more.
    whole = one["decode_bytes_per_token"] - one["contexts"][0]["kv_bytes_per_token"]
    assert max(r["weight_bytes_per_token"] for r in per) < whole <= tp["total_weight_bytes_per_token"] < 1.1 * whole, \
        (whole, per)
    # Rank 0 holds half the KV heads; its roofline counts its own shard against its probes.
    assert j["kv_bytes_per_cached_token"] * 2 == one["kv_bytes_per_cached_token"]
    assert j["tg_tokens_per_s"]["mean"] > 0 and j["bandwidth_before_gbps"] and j["bandwidth_after_gbps"] == []
    assert "at the same time" in tp["machine_probes"]
    # The single-process report keeps its keys.
    assert set(one) <= set(j) and one["bandwidth_after_gbps"], sorted(set(one) ^ set(j))
    text = sh(mpi(2, *args, "--tp", "2")).stdout.decode()
    assert re.search(r"reduced [0-9.]+ KiB per token", text) and "machine probes: run by all 2 ranks" in text \
        and "RSS per rank" in text, text


def comm_bench():
    """comm_bench (built beside internlm when MPI is found): the fixed-order all-reduce's
    latency and bandwidth per size and the 7b decode step's 64 sums of 16 KiB."""
    import json  # noqa: PLC0415 - local to these checks
    exe = os.path.join(os.path.dirname(BIN), "comm_bench")
    cmd = [MPIRUN, "--oversubscribe", "--bind-to", "none", "-np", "2", exe, "--reps", "2", "--iters", "64"]
    j = json.loads(sh([*cmd, "--sizes", "16k,64k", "--json"]).stdout)
    assert j["ranks"] == 2 and [r["bytes"] for r in j["results"]] == [16384, 65536], j
    for r in j["results"]:
        assert r["latency_us"]["median"] > 0 and r["algbw_gbps"] > 0 and r["mpi_allreduce_latency_us"]["median"] > 0, r
        # N = 2: a rank sends half the buffer in each phase, the whole buffer's bytes in all.
        assert r["bytes_sent_per_op"] == r["bytes"], r
    assert j["decode_7b"]["reductions_per_token"] == 64 and j["decode_7b"]["us_per_token"]["median"] > 0, j
    text = sh([*cmd, "--sizes", "16k"]).stdout.decode()
    assert "all_reduce_sum us" in text and "7b decode step" in text, text


class Serve(Server):
    """`internlm serve` on a tiny model: one process, or the ranks of `mpirun -np 2 ... --tp 2`
    (marked with INTERNLM_TP_TEST_MARK, so rank_pids finds them)."""

    def __init__(self, model, tp, name, *extra, env=None):
        self.marker = f"{os.getpid()}-serve-{name}"
        self.tp = tp
        args = ["serve", "--model", model, "--port", "0", "-t", "1", "--precision", "exact",
                "--kv-cache-dtype", "f32", "--max-model-len", "4096", "--block-size", "16", *extra]
        cmd = mpi(2, *args, "--tp", "2") if tp > 1 else [BIN, *args]
        self.log_path = os.path.join(TMP, f"serve-{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log,
                                     env={**ENV, **(env or {}), "INTERNLM_TP_TEST_MARK": self.marker})
        deadline = time.time() + 120
        line = b""
        while time.time() < deadline and b"listening on" not in line:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = self.proc.stdout.read1(4096)
                if not b:
                    break
                line += b
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}: {self.log_text()[-3000:]}")
        self.port = int(m.group(1))

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ranks(self):
        return rank_pids(self.marker)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in rank_pids(self.marker).values():  # mpirun killed: its ranks may linger
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()


def reply(srv, body):
    j = srv.post("/v1/chat/completions", body)
    return [ch["message"]["content"] for ch in j["choices"]], j["usage"]


def concurrently(fns):
    out, errors = [None] * len(fns), []

    def run(i):
        try:
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return out


PROMPTS = ["Tell me about the sea.", "1, 2, 3, 4,", "Write a haiku about mountains and rivers.", "hello",
           "What is tensor parallelism?"]
# A long prompt (several 16-token blocks): its second run adopts the first run's blocks.
LONG = " ".join(f"item {i} is {i * 37 % 101}," for i in range(60))


def serve_checks(model):
    one = Serve(model, 1, "tp1")
    try:
        greedy = {p: reply(one, chat(p, max_tokens=24, temperature=0))[0] for p in PROMPTS}
        sampled = reply(one, chat("Pick two words.", max_tokens=16, temperature=0.8, seed=3, n=2))[0]
        long_reply = reply(one, chat(LONG, max_tokens=16, temperature=0))[0]
        tight = {p: reply(one, chat(p, max_tokens=96, temperature=0, ignore_eos=True))[0] for p in PROMPTS[:4]}
    finally:
        one.stop()
    assert all(v[0] for v in greedy.values()), greedy

    # The idle follower must outlive INTERNLM_TP_TIMEOUT (rank 0's engine sends heartbeats).
    srv = Serve(model, 2, "tp2", env={"INTERNLM_TP_TIMEOUT": "3"})
    try:
        def same_greedy():
            for p in PROMPTS:
                got = reply(srv, chat(p, max_tokens=24, temperature=0))[0]
                assert got == greedy[p], (p, got, greedy[p])

        def same_concurrent():
            got = concurrently([lambda p=p: reply(srv, chat(p, max_tokens=24, temperature=0))[0] for p in PROMPTS])
            for p, g in zip(PROMPTS, got):
                assert g == greedy[p], (p, g, greedy[p])

        def streams():
            events, done = srv.stream("/v1/chat/completions", chat(PROMPTS[0], max_tokens=24, temperature=0))
            text, finish = stream_text(events)
            assert done and text[0] == greedy[PROMPTS[0]][0] and finish[0] in ("stop", "length"), (text, finish)

        def two_choices():
            got = reply(srv, chat("Pick two words.", max_tokens=16, temperature=0.8, seed=3, n=2))[0]
            assert got == sampled and len(got) == 2, (got, sampled)

        def prefix_hits():
            hits0 = srv.metric("vllm:prefix_cache_hits_total") or 0
            first, u1 = reply(srv, chat(LONG, max_tokens=16, temperature=0))
            second, u2 = reply(srv, chat(LONG, max_tokens=16, temperature=0))
            assert first == long_reply and second == long_reply, (first, second, long_reply)
            # Every full 16-token block of the prompt but the last token's.
            assert u2["prompt_tokens_details"]["cached_tokens"] == 16 * ((u2["prompt_tokens"] - 1) // 16) > 0, u2
            assert (srv.metric("vllm:prefix_cache_hits_total") or 0) > hits0

        def idle():
            time.sleep(5)  # past the 3 s collective timeout
            assert len(srv.ranks()) == 2, srv.log_text()[-2000:]
            same_greedy()

        def sigterm_drains():
            pids = srv.ranks()
            assert len(pids) == 2, pids
            c = srv.conn()
            c.request("POST", "/v1/chat/completions",
                      body=json.dumps(chat("last one", max_tokens=60, temperature=0, stream=True)).encode())
            r = c.getresponse()
            assert r.readline().startswith(b"data: ")
            os.kill(pids[0], signal.SIGTERM)
            rest = r.read()  # the stream runs to its end
            c.close()
            assert rest.rstrip().endswith(b"data: [DONE]"), rest[-200:]
            rc = srv.proc.wait(30)
            assert rc == 0, (rc, srv.log_text()[-2000:])
            assert not srv.ranks(), "a rank outlived the job"

        check("serve --tp 2: greedy replies = one process", same_greedy)
        check("serve --tp 2: concurrent greedy replies = one process", same_concurrent)
        check("serve --tp 2: streaming", streams)
        check("serve --tp 2: n = 2 (forked choices) = one process", two_choices)
        check("serve --tp 2: a repeated long prompt hits the prefix cache, same reply", prefix_hits)
        check("serve --tp 2: idle past INTERNLM_TP_TIMEOUT, still serving", idle)
        check("serve --tp 2: SIGTERM to rank 0 drains the stream, every rank exits 0", sigterm_drains)
    finally:
        srv.stop()

    def preempted():
        # 19 blocks of 16 tokens (f32 KV of the whole model: 1 KiB a token) for four sequences of
        # ~120 tokens: rank 0 preempts and recomputes; the followers just mirror.
        small = Serve(model, 2, "tight", "--kv-cache-gb", "0.0003", "--max-seqs", "4")
        try:
            got = concurrently([lambda p=p: reply(small, chat(p, max_tokens=96, temperature=0, ignore_eos=True))[0]
                                for p in tight])
            for p, g in zip(tight, got):
                assert g == tight[p], (p, g, tight[p])
            assert small.metric("vllm:num_preemptions_total") > 0, small.request("GET", "/metrics")[2][-2000:]
        finally:
            small.stop()

    check("serve --tp 2: preemption under a tight KV pool, replies = one process", preempted)


def serve_rank_killed(model):
    srv = Serve(model, 2, "killed", env={"INTERNLM_TP_TIMEOUT": "5"})
    try:
        pids = srv.ranks()
        assert len(pids) == 2, pids
        c = srv.conn(timeout=30)
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "x", "max_tokens": 4000, "temperature": 0, "ignore_eos": True, "stream": True}).encode())
        r = c.getresponse()
        assert r.status == 200, r.status
        for _ in range(5):
            assert r.readline(), "the stream ended early"
        os.kill(pids[1], signal.SIGKILL)
        t = time.time()
        rest = b""
        try:
            rest = r.read()
        except Exception:  # noqa: BLE001 - a reset connection is a fine way to learn of it
            pass
        c.close()
        rc = srv.proc.wait(15)
        took = time.time() - t
        assert not rest.rstrip().endswith(b"data: [DONE]"), "the stream ended as if nothing happened"
        assert rc != 0, "job exited 0 after rank 1 was killed"
        assert took <= 10, f"job took {took:.1f} s to end after rank 1 was killed"
    finally:
        srv.stop()


def main():
    if MPIRUN is None:
        print("skipped: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
        return 77
    os.makedirs(TMP, exist_ok=True)
    probe = sh([BIN, "logits", "--ids", "1", "--out", os.path.join(TMP, "probe"), "--tp", "2"], ok=False)
    if b"without MPI support" in probe.stderr:
        print("skipped: this internlm was built without MPI support")
        return 77

    bf16 = os.path.join(TMP, "bf16")
    sharded = os.path.join(TMP, "bf16-sharded")
    stored_int4 = os.path.join(TMP, "int4-stored")
    tied = os.path.join(TMP, "bf16-tied")
    common = ["synth", "--preset", "tiny", "--max-position-embeddings", "16", "--force"]
    sh([BIN, *common, "--out", bf16])
    sh([BIN, *common, "--out", sharded, "--shard-mb", "1", "--seed", "3"])
    sh([BIN, *common, "--out", tied, "--tie-word-embeddings", "--seed", "5"])
    sh([BIN, "quantize", "--model", bf16, "--quant", "int4", "--out", stored_int4, "--force"])

    check("--tp without mpirun: the world size is named",
          lambda: (lambda p: (p.returncode != 0 and b"needs exactly 2 MPI ranks" in p.stderr) or
                   (_ for _ in ()).throw(AssertionError(p.stderr)))(probe))
    check("--tp 4 does not divide 2 KV heads",
          lambda: (lambda p: (p.returncode != 0 and b"must divide the number of KV heads" in p.stderr) or
                   (_ for _ in ()).throw(AssertionError(p.stderr[-2000:])))(
              sh(mpi(4, *logits_args(bf16, os.path.join(TMP, "x"), "--tp", "4")), ok=False)))
    check("logits bf16 single-file: --tp 2 = --tp 1 (1e-5)", lambda: compare_logits(bf16, "bf16"))
    check("logits bf16 sharded: --tp 2 = --tp 1 (1e-5)", lambda: compare_logits(sharded, "sharded"))
    check("logits tied embeddings: --tp 2 = --tp 1 (1e-5)", lambda: compare_logits(tied, "tied"))
    check("logits int4 at load, sharded: --tp 2 = --tp 1 (1e-5; 1e-4 with two-level int8 activations)",
          lambda: compare_logits(sharded, "int4-load", ("--quant", "int4"), quantized=True))
    check("logits int4 stored: --tp 2 = --tp 1 (1e-5; 1e-4 with two-level int8 activations)", lambda: compare_logits(stored_int4, "int4-stored", quantized=True))
    check("logits over TCP (--mca btl tcp,self): --tp 2 = --tp 1 (1e-5)",
          lambda: compare_logits(bf16, "tcp", mca=("--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo")))
    if shutil.which("ip") and netns_usable():
        check("logits across two hosts (network namespaces, veth, TCP): --tp 2 = --tp 1 (1e-5)",
              lambda: two_hosts(bf16))
    else:
        print("skip two-host test: cannot create network namespaces here (needs root and `ip netns`)")
    check("run greedy bf16: --tp 2 = --tp 1", lambda: compare_run(bf16))
    check("run greedy int4 stored: --tp 2 = --tp 1", lambda: compare_run(stored_int4))
    serve_model = os.path.join(TMP, "serve-tiny")
    sh([BIN, "synth", "--preset", "tiny", "--seed", "7", "--force", "--out", serve_model])
    serve_checks(serve_model)
    check("serve --tp 2: rank 1 killed mid-stream ends the job non-zero within 10 s, the client cut off",
          lambda: serve_rank_killed(serve_model))
    check("a killed rank (SIGKILL) ends the job non-zero within 10 s", lambda: killed_rank(bf16, signal.SIGKILL))
    check("a hung rank (SIGSTOP) ends the job non-zero within 10 s, named", lambda: killed_rank(bf16, signal.SIGSTOP))

    check("bench --tp 2: per-rank weight bytes, bytes reduced per token = 2 x layers x hidden x 4, "
          "collective share", lambda: bench_tp(bf16))
    if os.path.exists(os.path.join(os.path.dirname(BIN), "comm_bench")):
        check("comm_bench: all_reduce_sum latency / bandwidth per size, 7b decode step", comm_bench)
    else:
        print("skip comm_bench: not built beside internlm (ninja comm_bench)")

    print(f"tensor_parallel: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
