#!/usr/bin/env python3
"""End-to-end checks of the `internlm` binary: inspect, run, logits, the built-in default
model, determinism, and clear errors (non-zero exit, message naming the culprit) for bad
arguments and broken checkpoints. Run by ctest with INTERNLM_BIN and INTERNLM_TEST_TMP set."""
import json
import os
import shutil
import struct
import subprocess
import sys

from harness import RESULTS, check

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")
TMP = os.path.join(os.environ.get("INTERNLM_TEST_TMP", "/tmp/internlm-test"), "cli")


def sh(*args, ok=True, env=None, timeout=600):
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if ok and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


def expect_error(args, *needles, env=None):
    p = sh(*args, ok=False, env=env)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0, f"{args} should fail but exited 0"
    assert "error" in err.lower(), f"no error message: {err!r}"
    for n in needles:
        assert n in err, f"error message {err!r} does not mention {n!r}"
    assert "Segmentation" not in err and p.returncode > 0, f"crashed: rc={p.returncode}"


def stats(stderr):
    line = [l for l in stderr.decode().splitlines() if l.startswith("[stats]")][-1]
    fields = dict(part.strip().split(": ", 1) for part in line[len("[stats]"):].split(","))
    return fields


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    model = os.path.join(TMP, "tiny")
    sh("synth", "--preset", "tiny", "--seed", "3", "--out", model)

    def inspect_text():
        out = sh("inspect", "--model", model).stdout.decode()
        assert "InternLM2ForCausalLM" in out and "hidden 256" in out, out

    def inspect_json():
        j = json.loads(sh("inspect", "--model", model, "--json").stdout)
        H, L, nh, nkv, I, V = 256, 2, 8, 2, 512, 92544
        hd = H // nh
        per_layer = 2 * H + (nh + 2 * nkv) * hd * H + H * nh * hd + 3 * H * I
        assert j["parameters"] == 2 * V * H + L * per_layer + H, j["parameters"]
        assert j["config"]["num_key_value_heads"] == nkv
        assert j["unused_tensors"] == []
        assert j["tokenizer"]["added_tokens"]["<|im_end|>"] == 92542

    def greedy_deterministic():
        args = ["run", "--model", model, "--prompt", "The capital of France is", "--max-tokens", "12",
                "--temperature", "0"]
        a, b = sh(*args), sh(*args)
        assert a.stdout == b.stdout and a.stdout.strip(), (a.stdout, b.stdout)
        s = stats(a.stderr)
        assert s["completion tokens"] in ("12",) or s["finish"] == "stop", s
        assert int(s["prompt tokens"]) == 6, s  # BOS + 5 pieces

    def threads_do_not_change_results():
        # Each output is computed by one thread in a fixed order, so the thread count leaves
        # greedy output unchanged, bit for bit.
        args = ["run", "--model", model, "--prompt", "Threads and kernels", "--max-tokens", "10", "--temperature", "0"]
        one = sh(*args, "--threads", "1").stdout
        assert one == sh(*args, "--threads", "2").stdout
        assert one == sh(*args, "--threads", "3").stdout

    def sampled_seeded():
        base = ["run", "--model", model, "--prompt", "hello", "--max-tokens", "16", "--temperature", "1.5",
                "--top-k", "0", "--top-p", "1"]
        a = sh(*base, "--seed", "7").stdout
        b = sh(*base, "--seed", "7").stdout
        c = sh(*base, "--seed", "8").stdout
        assert a == b, "same seed must give the same text"
        assert a != c, "different seeds should differ on a flat random model"

    def chat_run():
        p = sh("run", "--model", model, "--chat", "--prompt", "你好,请介绍一下你自己", "--max-tokens", "5",
               "--temperature", "0")
        s = stats(p.stderr)
        assert s["prompt tokens"] == "15", s  # the official ids for this prompt have 15 tokens
        p.stdout.decode("utf-8")  # valid UTF-8 always

    def logits_dump():
        out = os.path.join(TMP, "l.bin")
        sh("logits", "--model", model, "--ids", "1,333,352", "--out", out)
        meta = json.load(open(out + ".json"))
        assert meta["shape"] == [3, 92544] and meta["ids"] == [1, 333, 352], meta
        assert os.path.getsize(out) == 3 * 92544 * 4
        with open(out, "rb") as f:
            vals = struct.unpack("<8f", f.read(32))
        assert all(v == v and abs(v) < 1e4 for v in vals), vals
        # Prefill-then-decode gives the same logits as one forward when NTK is inactive.
        out2 = os.path.join(TMP, "l2.bin")
        sh("logits", "--model", model, "--ids", "1,333,352", "--prefill", "1", "--out", out2)
        import array
        a, b = array.array("f"), array.array("f")
        a.frombytes(open(out, "rb").read())
        b.frombytes(open(out2, "rb").read())
        worst = max(abs(x - y) for x, y in zip(a, b))
        assert worst < 1e-4, worst

    def load_progress_plain_lines():
        # stderr is a pipe here: plain lines (no \r), one at each phase's start and end.
        import re
        def progress(p, cmd):
            err = p.stderr.decode()
            assert "\r" not in err, repr(err)
            return [l for l in err.splitlines() if l.startswith(cmd + ": ")]
        lines = progress(sh("run", "--model", model, "--prompt", "hi", "--max-tokens", "2"), "run")
        assert lines[0] == "run: mapping shards 0/1 (0%)", lines
        assert re.fullmatch(r"run: mapping shards 1/1 done in \d+\.\d\d s", lines[1]), lines
        assert re.fullmatch(r"run: paging in 0\.00/\d+\.\d\d MB \(0%\)", lines[2]), lines
        assert re.fullmatch(r"run: paging in (\d+\.\d\d)/\1 MB done in \d+\.\d\d s", lines[-1]), lines
        assert len(lines) <= 4 + 9, lines  # at most one line per 10% in between
        # Quantized at load: tensors k/N instead of the page-in.
        lines = progress(sh("run", "--model", model, "--quant", "int8", "--prompt", "hi", "--max-tokens", "2"), "run")
        assert any(re.fullmatch(r"run: quantizing tensors 0/\d+ \(0%\)", l) for l in lines), lines
        assert re.fullmatch(r"run: quantizing tensors (\d+)/\1 done in \d+\.\d\d s", lines[-1]), lines
        assert not any("paging in" in l for l in lines), lines
        # --quiet: no progress either.
        assert progress(sh("run", "--model", model, "--prompt", "hi", "--max-tokens", "2", "-q"), "run") == []
        # quantize: the shards it reads, the bytes it writes; its output in 20 MB shards is
        # mapped shard by shard, and repacked, by the next load.
        q = os.path.join(TMP, "q-progress")
        lines = progress(sh("quantize", "--model", model, "--quant", "int8", "--out", q, "--shard-mb", "20",
                            "--force"), "quantize")
        assert lines[0] == "quantize: mapping shards 0/1 (0%)", lines
        assert re.fullmatch(r"quantize: quantizing (\d+\.\d\d)/\1 MB done in \d+\.\d\d s", lines[-1]), lines
        n = len(json.load(open(os.path.join(q, "model.safetensors.index.json")))["weight_map"])
        shards = len(set(json.load(open(os.path.join(q, "model.safetensors.index.json")))["weight_map"].values()))
        assert shards > 1, shards
        lines = progress(sh("run", "--model", q, "--prompt", "hi", "--max-tokens", "2"), "run")
        assert lines[0] == f"run: mapping shards 0/{shards} (0%)", lines
        assert any(l.startswith(f"run: mapping shards {shards}/{shards} done in ") for l in lines), lines
        assert lines[-1].startswith(f"run: repacking tensors {n}/{n} done in "), lines

    def quantized_checkpoint():
        for fmt in ("int8", "int4:64"):
            q = os.path.join(TMP, "q-" + fmt.replace(":", "-"))
            sh("quantize", "--model", model, "--quant", fmt, "--out", q, "--shard-mb", "20", "--force")
            cfg = json.load(open(os.path.join(q, "config.json")))
            assert cfg["quantization_config"]["quant_method"] == "internlm.cpp", cfg
            assert os.path.exists(os.path.join(q, "model.safetensors.index.json"))
            a, b = os.path.join(TMP, "qa.bin"), os.path.join(TMP, "qb.bin")
            sh("logits", "--model", model, "--quant", fmt, "--ids", "1,333,352,92543", "--out", a)
            sh("logits", "--model", q, "--ids", "1,333,352,92543", "--out", b)
            assert open(a, "rb").read() == open(b, "rb").read(), f"{fmt}: stored != load-time quantization"
            expect_error(["quantize", "--model", q, "--quant", "int4", "--out", os.path.join(TMP, "qq")], "already quantized")
            other = "int4" if fmt == "int8" else "int8"
            expect_error(["run", "--model", q, "--quant", other, "--prompt", "x"], "stored as")
        bad = os.path.join(TMP, "q-gptq")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(os.path.join(TMP, "q-int8"), bad)
        cfg = json.load(open(os.path.join(bad, "config.json")))
        cfg["quantization_config"]["quant_method"] = "gptq"
        json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
        expect_error(["inspect", "--model", bad], "quant_method")

    def default_model():
        d = os.path.join(TMP, "default-model")
        env = {"INTERNLM_DEFAULT_MODEL": d}
        p = sh("run", "--prompt", "hi", "--max-tokens", "3", env=env)
        assert os.path.exists(os.path.join(d, "config.json")), "default model not created"
        assert b"creating the built-in default" in p.stderr
        p2 = sh("run", "--prompt", "hi", "--max-tokens", "3", env=env)
        assert b"creating" not in p2.stderr, "default model must be generated only once"

    def bad_arguments():
        expect_error(["run", "--model", os.path.join(TMP, "nope"), "--prompt", "x"], "nope")
        expect_error(["run", "--model", model], "--prompt")
        expect_error(["logits", "--model", model, "--ids", "1,abc", "--out", os.path.join(TMP, "x")], "abc")
        expect_error(["logits", "--model", model, "--ids", "1,99999999", "--out", os.path.join(TMP, "x")], "99999999")
        expect_error(["run", "--model", model, "--prompt", "x", "--backend", "nosuch"], "nosuch")
        expect_error(["run", "--model", model, "--prompt", "x", "--temperature", "-1"], "temperature")
        expect_error(["run", "--model", model, "--prompt", "x", "--top-p", "0"], "top_p")
        bad = os.path.join(TMP, "bad.txt")
        open(bad, "wb").write(b"abc \xff\xfe def")
        expect_error(["run", "--model", model, "--prompt-file", bad], "UTF-8")
        p = sh("run", "--model", model, "--prompt", "x", "--max-tokens", "nan", ok=False)
        assert p.returncode != 0

    def broken_checkpoints():
        def copy(name):
            d = os.path.join(TMP, name)
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(model, d)
            return d

        d = copy("truncated")
        st = os.path.join(d, "model.safetensors")
        size = os.path.getsize(st)
        with open(st, "r+b") as f:
            f.truncate(size // 2)
        expect_error(["inspect", "--model", d], "model.safetensors")
        expect_error(["run", "--model", d, "--prompt", "x"], "model.safetensors")

        d = copy("renamed-tensor")
        st = os.path.join(d, "model.safetensors")
        data = bytearray(open(st, "rb").read())
        n = struct.unpack("<Q", data[:8])[0]
        header = data[8:8 + n].replace(b'"model.norm.weight"', b'"model.xorm.weight"')
        assert len(header) == n
        data[8:8 + n] = header
        open(st, "wb").write(data)
        expect_error(["inspect", "--model", d], "model.norm.weight")

        d = copy("bad-config")
        cfg = json.load(open(os.path.join(d, "config.json")))
        del cfg["num_hidden_layers"]
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        expect_error(["inspect", "--model", d], "num_hidden_layers")

        d = copy("misshaped")
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg["intermediate_size"] = 640
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        expect_error(["inspect", "--model", d], "feed_forward.w1.weight", "[640, 256]")

        d = copy("garbage-header")
        with open(os.path.join(d, "model.safetensors"), "r+b") as f:
            f.seek(8)
            f.write(b"\x00garbage")
        expect_error(["inspect", "--model", d], "model.safetensors")

        d = copy("unknown-arch")
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg["architectures"] = ["LlamaForCausalLM"]
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        expect_error(["inspect", "--model", d], "LlamaForCausalLM", "InternLM2ForCausalLM")

        # Found by an adversarial run (issue 17): each of these used to load or report success.
        d = copy("two-shards-no-index")
        os.rename(os.path.join(d, "model.safetensors"), os.path.join(d, "a.safetensors"))
        shutil.copy(os.path.join(d, "a.safetensors"), os.path.join(d, "b.safetensors"))
        expect_error(["inspect", "--model", d], "a.safetensors", "b.safetensors")

        d = copy("no-tokenizer")
        os.remove(os.path.join(d, "tokenizer.model"))
        out = sh("inspect", "--model", d).stdout.decode()
        assert "warning" in out and "tokenizer.model" in out, out
        expect_error(["inspect", "--model", d, "--strict"], "--strict")
        expect_error(["run", "--model", d, "--prompt", "x"], "tokenizer.model")

        for field, value in (("rope_theta", 1e-320), ("rms_norm_eps", 1e300)):
            d = copy("domain-" + field)
            cfg = json.load(open(os.path.join(d, "config.json")))
            cfg[field] = value
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
            expect_error(["logits", "--model", d, "--prompt", "hi", "--out", os.path.join(TMP, "x")], field)

        d = copy("gen-eos")
        gen = json.load(open(os.path.join(d, "generation_config.json")))
        gen["eos_token_id"] = [2, 999999]
        json.dump(gen, open(os.path.join(d, "generation_config.json"), "w"))
        expect_error(["run", "--model", d, "--prompt", "x"], "generation_config.json", "eos_token_id", "999999")

        # Weights that pass every check but compute NaN: no command reports success.
        d = copy("nan-weights")
        st = os.path.join(d, "model.safetensors")
        data = bytearray(open(st, "rb").read())
        n = struct.unpack("<Q", data[:8])[0]
        meta = json.loads(data[8:8 + n])["model.norm.weight"]
        assert meta["dtype"] == "BF16", meta
        a, b = meta["data_offsets"]
        data[8 + n + a:8 + n + b] = b"\xc0\x7f" * ((b - a) // 2)  # bf16 NaN
        open(st, "wb").write(data)
        expect_error(["logits", "--model", d, "--prompt", "hi", "--out", os.path.join(TMP, "x")], "not finite")
        expect_error(["run", "--model", d, "--prompt", "hi", "--max-tokens", "2"], "non-finite")

    def env_and_config():
        # Every flag from INTERNLM_<FLAG>; the command line beats the environment, which beats --config.
        base = ["run", "--model", model, "--prompt", "hello", "--temperature", "0", "--max-tokens", "2"]
        n = lambda p: stats(p.stderr)["completion tokens"]  # noqa: E731
        env = {"INTERNLM_MAX_TOKENS": "3", "INTERNLM_IGNORED_UNKNOWN": "1"}
        assert n(sh("run", "--model", model, "--prompt", "hello", "--temperature", "0", env=env)) == "3"
        assert n(sh(*base, env=env)) == "2"  # command line wins
        assert b"INTERNLM_MAX_TOKENS" in sh("run", "--help").stdout  # the help names each variable
        assert b"INTERNLM_MAX_MODEL_LEN" in sh("serve", "--help").stdout  # serve's flags too
        # Only the subcommand being run reads the environment: bench-serve's file is not bench's switch.
        assert n(sh(*base, env={"INTERNLM_JSON": "out.json", "INTERNLM_PORT": "not-a-port"})) == "2"
        expect_error(["run", "--model", model, "--prompt", "x"], "temperature", env={"INTERNLM_TEMPERATURE": "-1"})
        assert stats(sh("run", "--prompt", "hi", "--max-tokens", "1", env={"INTERNLM_MODEL": model}).stderr)
        cfg = os.path.join(TMP, "flags.toml")
        with open(cfg, "w") as f:
            f.write('# internlm flags\nmodel = "%s"\nmax_tokens = 4\ntemperature = 0\nquiet = false\n'
                    'served-model-name = "unused by run"\n[logits]\nprefill = 1\n' % model)
        assert n(sh("run", "--config", cfg, "--prompt", "hello")) == "4"
        assert n(sh("--config", cfg, "run", "--prompt", "hello")) == "4"  # before the subcommand too
        assert n(sh("run", "--config", cfg, "--prompt", "hello", env={"INTERNLM_MAX_TOKENS": "3"})) == "3"
        assert n(sh("run", "--config", cfg, "--prompt", "hello", "--max-tokens", "2", env={"INTERNLM_MAX_TOKENS": "3"})) == "2"
        out = os.path.join(TMP, "cfg-logits.bin")
        sh("logits", "--config", cfg, "--ids", "1,333,352", "--out", out)  # [logits] section
        assert json.load(open(out + ".json"))["prefill"] == 1
        with open(cfg, "w") as f:
            f.write("max-tokenz = 3\n")
        p = sh("run", "--config", cfg, "--prompt", "x", ok=False)
        assert p.returncode != 0 and b"max-tokenz" in p.stderr, p.stderr
        with open(cfg, "w") as f:
            f.write("[run]\nno-such-flag = 1\n")
        assert sh("run", "--config", cfg, "--prompt", "x", ok=False).returncode != 0
        p = sh("run", "--config", os.path.join(TMP, "missing.toml"), "--prompt", "x", ok=False)
        assert p.returncode != 0 and b"missing.toml" in p.stderr, p.stderr

    def max_model_len_alias():
        # run --max-model-len as serve's; --max-context is the old name of the same flag.
        for flag in ("--max-model-len", "--max-context"):
            s = stats(sh("run", "--model", model, "--prompt", "hello", "--temperature", "0", "--max-tokens", "50",
                         flag, "8").stderr)
            assert s["prompt tokens"] == "2" and int(s["completion tokens"]) <= 6 and s["finish"] == "length", s

    def empty_prompts():
        # An empty prompt is a prompt: BOS only, as the official tokenizer encodes "".
        out = os.path.join(TMP, "empty.bin")
        sh("logits", "--model", model, "--prompt", "", "--out", out)
        assert json.load(open(out + ".json"))["ids"] == [1]
        s = stats(sh("run", "--model", model, "--prompt", "", "--max-tokens", "2", "--temperature", "0").stderr)
        assert s["prompt tokens"] == "1", s
        assert sh("tokenize", "--text", "").stdout.decode().strip() == "1"
        expect_error(["logits", "--model", model, "--out", out], "--prompt or --ids")
        expect_error(["logits", "--model", model, "--prompt", "", "--ids", "1", "--out", out], "--prompt or --ids")

    def kv_cache_dtype_everywhere():
        # run, logits and bench take serve's --kv-cache-dtype; attention reads the rounded /
        # quantized K/V, so each type gives its own logits.
        out = {}
        for t in ("f32", "bf16", "f16", "int8"):
            f = os.path.join(TMP, f"kv-{t}.bin")
            sh("logits", "--model", model, "--ids", "1,333,352,410,2000,3000", "--prefill", "1", "--out", f,
               "--kv-cache-dtype", t)
            assert json.load(open(f + ".json"))["kv_cache_dtype"] == t
            out[t] = open(f, "rb").read()
        assert out["bf16"] != out["f32"] and out["int8"] != out["f32"] and out["int8"] != out["bf16"]
        s = stats(sh("run", "--model", model, "--prompt", "hello", "--max-tokens", "4", "--temperature", "0",
                     "--kv-cache-dtype", "int8").stderr)
        assert s["prompt tokens"] == "2", s
        for cmd in (["run", "--prompt", "x"], ["logits", "--ids", "1", "--out", os.path.join(TMP, "x.bin")],
                    ["bench", "-n", "1"]):
            expect_error([*cmd, "--model", model, "--kv-cache-dtype", "i8"], "--kv-cache-dtype must be")

    def bench_context():
        # bench --context: tg after N cached tokens synthesised into the cache; the bytes per
        # token count the KV of every layer at that context in the cache's element type.
        j = json.loads(sh("bench", "--model", model, "-p", "0", "-n", "4", "-r", "1", "-t", "1",
                          "--context", "0,300", "--kv-cache-dtype", "int8", "--json").stdout)
        assert j["kv_cache_dtype"] == "int8" and j["prompt_tokens"] == 0, j
        L, nkv, hd = 2, 2, 32
        assert j["kv_bytes_per_cached_token"] == L * 2 * (nkv * hd + 4 * nkv), j["kv_bytes_per_cached_token"]
        c0, c1 = j["contexts"]
        assert (c0["context"], c1["context"]) == (0, 300) and not c0["synthesized_context"] and c1["synthesized_context"]
        per = j["kv_bytes_per_cached_token"]
        assert abs((c1["decode_bytes_per_token"] - c0["decode_bytes_per_token"]) - 300 * per) < 1e-6 * per
        assert abs(c0["kv_bytes_per_token"] - per * (1 + 5 / 2)) < 1e-6 * per  # mean context of 4 steps after BOS
        for c in (c0, c1):
            assert c["tg_tokens_per_s"]["mean"] > 0 and c["tg_roofline_ratio"]["vs_highest_bandwidth"] > 0, c
        assert j["tg_tokens_per_s"] == c0["tg_tokens_per_s"]  # the top-level tg is the first context's
        text = sh("bench", "--model", model, "-p", "0", "-n", "2", "-r", "1", "-t", "1", "--context", "1k").stdout.decode()
        assert "@ context 1024" in text and "synthesised" in text and "KV cache f32" in text, text
        expect_error(["bench", "--model", model, "--context", "10x"], "--context")
        expect_error(["bench", "--model", model, "--context", "100000000"], "context limit")

    for name, fn in [("inspect text", inspect_text), ("inspect json", inspect_json),
                     ("greedy is deterministic", greedy_deterministic),
                     ("threads do not change results", threads_do_not_change_results), ("seeded sampling", sampled_seeded),
                     ("chat run", chat_run), ("load progress", load_progress_plain_lines), ("logits dump", logits_dump), ("quantized checkpoint", quantized_checkpoint), ("default model", default_model),
                     ("bad arguments", bad_arguments), ("broken checkpoints", broken_checkpoints),
                     ("flags from INTERNLM_* and --config", env_and_config), ("--max-model-len alias", max_model_len_alias),
                     ("empty prompts", empty_prompts), ("--kv-cache-dtype on run, logits, bench", kv_cache_dtype_everywhere),
                     ("bench --context", bench_context)]:
        check(name, fn)
    print(f"cli: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
