#!/usr/bin/python3
"""The C++ forward pass against the independent numpy oracle (tests/python/numpy_ref.py).

The C++ binary writes synthetic tiny checkpoints (`internlm synth`) and dumps logits
(`internlm logits`); numpy_ref computes the same logits in float64 from the same files. Each case
passes when max|cpp - numpy| / max|numpy| <= 1e-4.

Environment (set by ctest): INTERNLM_BIN, INTERNLM_TEST_TMP, INTERNLM_TOKENIZER_DIR (optional).
Run by hand:  INTERNLM_BIN=build/internlm INTERNLM_TEST_TMP=/tmp/ilm-test /usr/bin/python3 tests/python/test_forward_vs_numpy.py
"""
import os
import shutil
import subprocess
import sys
import time
import traceback

import numpy as np

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_ref as nr  # noqa: E402

TOL = 1e-4
VOCAB = 92544
LAYERS = 2
SEED = 1234
# Several cases exist to prove that the C++ side implements a specific behaviour (NTK prefill vs
# decode, scaling types). The numpy logits of the variants must differ by clearly more than the
# tolerance, or such a case could not catch the bug it targets.
DISCRIMINATE = 3 * TOL

BIN = os.environ.get("INTERNLM_BIN", "")
TMP = os.environ.get("INTERNLM_TEST_TMP", "")
TOKDIR = os.environ.get("INTERNLM_TOKENIZER_DIR", "")

results = []  # (ok, line)


def report(ok, line):
    results.append((ok, line))
    print(("PASS " if ok else "FAIL ") + line, flush=True)


def run(cmd, timeout=600):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        tail = (p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace"))[-2000:]
        raise RuntimeError(f"command failed (rc {p.returncode}): {' '.join(cmd)[:300]}\n{tail}")
    return time.time() - t0


def make_ids(n, seed):
    """Random ids in [0, VOCAB) with the edge ids 0, 1, 2 and several > 92500 included."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, n).tolist()
    specials = [1, 0, 2, 92543, 92542, 92501, 92538, 92520]
    slots = rng.choice(np.arange(1, n), size=min(len(specials) - 1, n - 1), replace=False).tolist()
    ids[0] = specials[0]  # BOS first, as a real prompt has it
    for pos, tok in zip(slots, specials[1:]):
        ids[pos] = tok
    return [int(i) for i in ids]


def synth(name, *extra):
    out = os.path.join(TMP, name)
    cmd = [BIN, "synth", "--preset", "tiny", "--layers", str(LAYERS), "--seed", str(SEED)]
    cmd += list(extra)
    if TOKDIR:
        cmd += ["--tokenizer", TOKDIR]
    cmd += ["--out", out, "--force"]
    dt = run(cmd)
    print(f"  synth {name} ({' '.join(extra) or 'defaults'}): {dt:.1f}s", flush=True)
    return out


# Every backend is checked against the oracle: ref (the f64-accumulating oracle backend) to
# 1e-4, the cpu backend's exact path (f32 accumulation) to the 1e-3 it promises, and its
# default fast path (bf16 activations) to 6e-3, half of the official bf16 run's error.
BACKENDS = [("ref", "exact", 1e-4), ("cpu", "exact", 1e-3), ("cpu", "fast", 6e-3)]


def cpp_logits(model_dir, tag, ids=None, prompt=None, chat=False, prefill=None, backend="ref", precision="exact"):
    out = os.path.join(TMP, f"logits_{tag}.bin")
    cmd = [BIN, "logits", "--model", model_dir, "--backend", backend, "--precision", precision]
    if ids is not None:
        cmd += ["--ids", ",".join(str(i) for i in ids)]
    else:
        cmd += ["--prompt", prompt]
        if chat:
            cmd += ["--chat"]
    if prefill is not None:
        cmd += ["--prefill", str(prefill)]
    cmd += ["--out", out]
    dt = run(cmd)
    logits, got_ids, meta = nr.read_logits(out)
    for f in (out, out + ".json"):
        os.remove(f)
    return logits, got_ids, dt


def compare(label, cpp, ref, rows=None, tol=TOL):
    """Appends a case result; returns the relative error."""
    if cpp.shape != ref.shape:
        report(False, f"{label}: shape {cpp.shape} vs numpy {ref.shape}")
        return None
    if not np.all(np.isfinite(cpp)):
        report(False, f"{label}: non-finite C++ logits")
        return None
    if rows is not None:
        cpp, ref = cpp[rows], ref[rows]
    diff = float(np.max(np.abs(cpp.astype(np.float64) - ref)))
    scale = float(np.max(np.abs(ref)))
    rel = diff / scale
    report(rel <= tol, f"{label}: max|a-b| {diff:.3e} / max|b| {scale:.3e} = {rel:.3e} (tol {tol:.0e})")
    return rel


def case(label, model, model_dir, ids, prefill=None, tag=None):
    """C++ vs numpy on the same ids; returns the numpy logits (or None on error)."""
    try:
        t0 = time.time()
        ref = nr.run_ids(model, ids, prefill)
        t_np = time.time() - t0
        for be, precision, tol in BACKENDS:
            backend = f"{be} {precision}"
            cpp, got_ids, t_cpp = cpp_logits(model_dir, tag or label.split()[0], ids=ids, prefill=prefill,
                                             backend=be, precision=precision)
            if got_ids != ids:
                report(False, f"{label} [{backend}]: C++ tool echoed different ids")
                continue
            print(f"  ({label} [{backend}]: T={len(ids)}, numpy {t_np:.1f}s, C++ {t_cpp:.1f}s)", flush=True)
            compare(f"{label} [{backend}]", cpp, ref, tol=tol)
        return ref
    except Exception as e:  # one broken case must not hide the others
        report(False, f"{label}: {type(e).__name__}: {e}")
        traceback.print_exc()
        return None


def expect(label, ok, detail):
    report(bool(ok), f"{label}: {detail}")


def load(model_dir):
    return nr.load_checkpoint(model_dir)


def stored_dtypes(m):
    return sorted(set(m.dtypes.values()))


def main():
    global TMP
    if not BIN or not os.path.isfile(BIN) or not os.access(BIN, os.X_OK):
        print(f"INTERNLM_BIN is not an executable: {BIN!r}")
        print("forward vs numpy: 0 passed, 1 failed")
        return 1
    if not TMP:
        print("INTERNLM_TEST_TMP is not set")
        print("forward vs numpy: 0 passed, 1 failed")
        return 1
    TMP = os.path.join(TMP, "forward_vs_numpy")
    os.makedirs(TMP, exist_ok=True)
    t_start = time.time()

    # 0. the oracle's own checks
    try:
        expect("numpy_ref self-test", nr.self_test(verbose=False), "built-in oracle checks")
    except Exception as e:
        report(False, f"numpy_ref self-test: {type(e).__name__}: {e}")

    ids40 = make_ids(40, 1)
    ids24 = make_ids(24, 2)
    ids200 = make_ids(200, 3)

    # a, f, chat: bf16 single file (default max_position_embeddings; L <= M)
    try:
        d = synth("ck_bf16", "--dtype", "bf16")
        m = load(d)
        expect("a setup", stored_dtypes(m) == ["BF16"] and m.files == ["model.safetensors"]
               and 40 <= m.M, f"dtypes {stored_dtypes(m)}, files {m.files}, M {m.M}, "
               f"rope_scaling {m.rope_type}:{m.rope_factor}")
        case("a bf16 single-file", m, d, ids40)
        case("f bf16 --prefill 1 (pure decode)", m, d, ids24, prefill=1, tag="f")
        # chat prompt: ids come from the C++ tokenizer, read back from FILE.json
        try:
            prompt = "你好,请介绍一下你自己"
            cpp, chat_ids, _ = cpp_logits(d, "chat", prompt=prompt, chat=True)
            print(f"  chat ids ({len(chat_ids)}): {chat_ids}")
            ok_ids = len(chat_ids) >= 2 and chat_ids[0] == 1 and 92543 in chat_ids and cpp.shape[0] == len(chat_ids)
            expect("chat setup", ok_ids, "ids start with BOS 1 and contain <|im_start|> 92543")
            if ok_ids:
                compare(f"chat prompt --chat (T={len(chat_ids)})", cpp, nr.run_ids(m, chat_ids))
        except Exception as e:
            report(False, f"chat prompt: {type(e).__name__}: {e}")
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_bf16: {type(e).__name__}: {e}")

    # b: f32
    try:
        d = synth("ck_f32", "--dtype", "f32")
        m = load(d)
        expect("b setup", stored_dtypes(m) == ["F32"], f"dtypes {stored_dtypes(m)}")
        case("b f32 single-file", m, d, ids40)
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_f32: {type(e).__name__}: {e}")

    # c: bf16 sharded
    try:
        d = synth("ck_bf16_sharded", "--dtype", "bf16", "--shard-mb", "20")
        m = load(d)
        expect("c setup", os.path.exists(os.path.join(d, "model.safetensors.index.json"))
               and len(m.files) >= 2 and stored_dtypes(m) == ["BF16"],
               f"{len(m.files)} shards, dtypes {stored_dtypes(m)}")
        case("c bf16 sharded", m, d, ids40)
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_bf16_sharded: {type(e).__name__}: {e}")

    # d, e: dynamic NTK active (M = 128, 200 tokens)
    try:
        d = synth("ck_ntk", "--dtype", "bf16", "--max-position-embeddings", "128",
                  "--rope-scaling", "dynamic:2.0")
        m = load(d)
        expect("d setup", m.M == 128 and m.rope_type == "dynamic" and m.rope_factor == 2.0,
               f"M {m.M}, rope_scaling {m.rope_type}:{m.rope_factor}, "
               f"base(200) {nr.ntk_base(m.theta, m.rope_factor, m.M, m.hd, 200):.6e}")
        full = case("d NTK full prefill 200 > M=128", m, d, ids200, tag="d")
        p150 = case("e NTK prefill 150 then decode to 200", m, d, ids200, prefill=150, tag="e")
        p100 = case("e2 NTK prefill 100 (< M) then decode across M to 160", m, d, ids200[:160],
                    prefill=100, tag="e2")
        if full is not None and p150 is not None:
            r = nr._rel(p150[150:], full[150:])
            expect("e discriminates", r > DISCRIMINATE,
                   f"numpy prefill-150 vs one-shot rows 150..199 differ by rel {r:.3e} (> {DISCRIMINATE:.0e})")
        if full is not None and p100 is not None:
            full160 = nr.run_ids(m, ids200[:160])
            r = nr._rel(p100[128:], full160[128:])
            expect("e2 discriminates", r > DISCRIMINATE,
                   f"numpy prefill-100 vs one-shot (160) rows 128..159 differ by rel {r:.3e} (> {DISCRIMINATE:.0e})")
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_ntk: {type(e).__name__}: {e}")
        full = None

    # g: rope scaling none and linear:2.0 on a sequence > M
    g_none = g_lin = None
    try:
        d = synth("ck_rope_none", "--dtype", "bf16", "--max-position-embeddings", "128",
                  "--rope-scaling", "none")
        m = load(d)
        expect("g1 setup", m.M == 128 and m.rope_type is None, f"M {m.M}, rope_scaling {m.cfg.get('rope_scaling')}")
        g_none = case("g1 rope-scaling none, 200 > M", m, d, ids200, tag="g1")
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_rope_none: {type(e).__name__}: {e}")
    try:
        d = synth("ck_rope_linear", "--dtype", "bf16", "--max-position-embeddings", "128",
                  "--rope-scaling", "linear:2.0")
        m = load(d)
        expect("g2 setup", m.M == 128 and m.rope_type == "linear" and m.rope_factor == 2.0,
               f"M {m.M}, rope_scaling {m.cfg.get('rope_scaling')}")
        g_lin = case("g2 rope-scaling linear:2.0, 200 > M", m, d, ids200, tag="g2")
        case("g3 linear:2.0 prefill 180 then decode to 200", m, d, ids200, prefill=180, tag="g3")
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_rope_linear: {type(e).__name__}: {e}")
    if g_none is not None and g_lin is not None:
        r = nr._rel(g_lin, g_none)
        expect("g discriminates", r > DISCRIMINATE, f"numpy linear vs none differ by rel {r:.3e}")
    if g_none is not None and full is not None:
        r = nr._rel(full, g_none)
        expect("d discriminates", r > DISCRIMINATE, f"numpy dynamic (200 > M) vs none differ by rel {r:.3e}")

    # h: tied embeddings
    try:
        d = synth("ck_tie", "--dtype", "bf16", "--tie-word-embeddings")
        m = load(d)
        expect("h setup", m.tie, f"tie_word_embeddings {m.cfg.get('tie_word_embeddings')}, "
               f"output.weight {'present' if m.has('output.weight') else 'absent'}")
        case("h tie_word_embeddings", m, d, ids40)
        del m
        shutil.rmtree(d, ignore_errors=True)
    except Exception as e:
        report(False, f"checkpoint ck_tie: {type(e).__name__}: {e}")

    npass = sum(1 for ok, _ in results if ok)
    nfail = len(results) - npass
    print(f"  total time {time.time() - t_start:.1f}s")
    print(f"forward vs numpy: {npass} passed, {nfail} failed")
    return 0 if nfail == 0 and npass > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
