#!/usr/bin/env python3
"""The C++ tokenizer (`internlm tokenize`) against an oracle: Python sentencepiece on the real
tokenizer.model (out_type=int, no extra options) after splitting out the 9 added tokens of
tokenizer_config.json literally (leftmost first, longest at a position), plus BOS. This is the
official fast tokenizer's encoding (shared/spec/internlm2.md 8.2) for every text that does not
contain "[UNUSED_TOKEN_141]".."[UNUSED_TOKEN_146]" (there raw sentencepiece would give the renamed
ids; the C++ unit tests cover that case).

Also checked: decode(encode(s)) == s exactly for every corpus string (with and without BOS and
with skip-special), the decoded text of every single token in the vocabulary (a lone "▁Hello" is
" Hello"), U+FFFD replacement for random byte-token sequences against Python's
bytes.decode("utf-8", errors="replace"), --text/--file/--json/--chat, and a clear error for
invalid UTF-8. Run by ctest with INTERNLM_BIN and INTERNLM_TOKENIZER_DIR set."""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import sentencepiece as spm

BIN = os.environ.get("INTERNLM_BIN", "build/internlm")
TOK_DIR = os.environ.get("INTERNLM_TOKENIZER_DIR",
                         os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "models",
                                      "internlm2-tokenizer"))
TMP_ROOT = os.path.join(os.environ["INTERNLM_TEST_TMP"], "tokenizer") if os.environ.get("INTERNLM_TEST_TMP") else None
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_corpus.jsonl")
SPACE = "\u2581"
RESULTS = {"passed": 0, "failed": 0}
FAILURES = []


def record(ok, what):
    if ok:
        RESULTS["passed"] += 1
    else:
        RESULTS["failed"] += 1
        FAILURES.append(what)


def run(args, stdin=None, ok=True):
    p = subprocess.run([BIN, "tokenize", "--model", TOK_DIR, *args], input=stdin, capture_output=True, timeout=600)
    if ok and p.returncode != 0:
        raise RuntimeError(f"internlm tokenize {args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


def run_jsonl(lines, *flags):
    """One process for a whole list: lines are JSON values, the answer one JSON value per line."""
    data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode("utf-8")
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", dir=TMP_ROOT, delete=False) as f:
        f.write(data)
        path = f.name
    try:
        out = run(["--jsonl", "--file", path, *flags]).stdout.decode("utf-8")
    finally:
        os.unlink(path)
    got = [json.loads(l) for l in out.split("\n")[:-1]]  # not splitlines(): U+2028 is not a line end here
    if len(got) != len(lines):
        raise RuntimeError(f"{len(lines)} lines in, {len(got)} lines out")
    return got


class Oracle:
    def __init__(self, tok_dir):
        self.sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "tokenizer.model"))
        with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.added = {v["content"]: int(k) for k, v in cfg["added_tokens_decoder"].items()}
        self.special_ids = {int(k) for k, v in cfg["added_tokens_decoder"].items() if v.get("special", False)}
        self.content_of = {i: c for c, i in self.added.items()}
        assert cfg.get("add_bos_token", True) and not cfg.get("add_eos_token", False)
        assert len(self.added) == 9 and self.added["<|im_end|>"] == 92542 and self.added["<s>"] == 1, self.added
        self.bos = 1

    def split(self, text):
        """[(is_added, chunk)]: added tokens split out literally, leftmost first, longest at a position."""
        parts, start, i = [], 0, 0
        while i < len(text):
            best = None
            for tok in self.added:
                if text.startswith(tok, i) and (best is None or len(tok) > len(best)):
                    best = tok
            if best is None:
                i += 1
                continue
            if i > start:
                parts.append((False, text[start:i]))
            parts.append((True, best))
            i += len(best)
            start = i
        if start < len(text):
            parts.append((False, text[start:]))
        return parts

    def encode(self, text):
        ids = [self.bos]
        for is_added, chunk in self.split(text):
            ids += [self.added[chunk]] if is_added else self.sp.encode(chunk, out_type=int)
        return ids

    def text_without_specials(self, text):
        return "".join(c for is_added, c in self.split(text) if not (is_added and self.added[c] in self.special_ids))

    def token_text(self, i):
        """What one token decodes to on its own (fast tokenizer, specials shown)."""
        if i in self.content_of:
            return self.content_of[i]
        if self.sp.is_byte(i):
            return bytes([int(self.sp.id_to_piece(i)[3:5], 16)]).decode("utf-8", errors="replace")
        return self.sp.id_to_piece(i).replace(SPACE, " ")


def main():
    if TMP_ROOT:
        os.makedirs(TMP_ROOT, exist_ok=True)
    oracle = Oracle(TOK_DIR)
    with open(CORPUS, encoding="utf-8") as f:
        corpus = [json.loads(l) for l in f if l.strip()]
    assert len(corpus) >= 300, len(corpus)
    assert not any(re.search(r"\[UNUSED_TOKEN_14[1-6]\]", s) for s in corpus), "corpus must not hold renamed pieces"

    # 1. Encoding: the whole corpus through one process.
    got = run_jsonl(corpus)
    for s, ids in zip(corpus, got):
        want = oracle.encode(s)
        record(ids == want, f"encode {s!r}: got {ids}, want {want}")
    ours = got

    # 2. Exact round trip (U+2581 in the input is the space marker: it comes back as a space).
    expected = [s.replace(SPACE, " ") for s in corpus]
    dec = run_jsonl([ids[1:] for ids in ours], "--decode")
    for s, e, d in zip(corpus, expected, dec):
        record(d == e, f"decode(encode({s!r})) = {d!r}, want {e!r}")
    dec = run_jsonl(ours, "--decode")
    for s, e, d in zip(corpus, expected, dec):
        record(d == "<s>" + e, f"decode with BOS {s!r} = {d!r}")
    dec = run_jsonl(ours, "--decode", "--skip-special")
    for s, d in zip(corpus, dec):
        e = oracle.text_without_specials(s).replace(SPACE, " ")
        record(d == e, f"decode --skip-special {s!r} = {d!r}, want {e!r}")

    # 3. Every single token on its own: leading spaces kept, specials shown as their strings.
    vocab = oracle.sp.get_piece_size()
    dec = run_jsonl([[i] for i in range(vocab)], "--decode")
    bad = [(i, d, oracle.token_text(i)) for i, d in enumerate(dec) if d != oracle.token_text(i)]
    record(not bad, f"single-token decode differs for {len(bad)} ids, e.g. {bad[:5]}")
    hello = oracle.sp.piece_to_id(SPACE + "Hello")
    record(dec[hello] == " Hello", f"decode([{hello}]) = {dec[hello]!r}, want ' Hello'")
    record(dec[92542] == "<|im_end|>" and dec[1] == "<s>", f"specials decode to {dec[92542]!r}, {dec[1]!r}")

    # 4. U+FFFD replacement: random byte-token runs mixed with text and special tokens, against
    # Python's decoder (the "maximal subpart" practice).
    rng = random.Random(1234)
    hot = [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xAD, 0xB8, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE4, 0xED, 0xEF, 0xF0, 0xF4,
           0xF5, 0xFF, 0x41, 0x0A]
    text_ids = oracle.sp.encode("Hi 中文", out_type=int)
    seqs = []
    for _ in range(600):
        seq = []
        for _ in range(rng.randrange(1, 16)):
            r = rng.random()
            if r < 0.45:
                seq.append(3 + rng.choice(hot))
            elif r < 0.75:
                seq.append(3 + rng.randrange(256))
            elif r < 0.9:
                seq.append(rng.choice(text_ids))
            else:
                seq.append(rng.choice([1, 2, 92542]))
        seqs.append(seq)
    dec = run_jsonl(seqs, "--decode")
    for seq, d in zip(seqs, dec):
        raw = b"".join(oracle.token_text(i).encode() if not oracle.sp.is_byte(i) else
                       bytes([int(oracle.sp.id_to_piece(i)[3:5], 16)]) for i in seq)
        want = raw.decode("utf-8", errors="replace")
        record(d == want, f"decode {seq} = {d!r}, want {want!r}")

    # 5. The other input and output modes.
    s = "Hello world, 你好<|im_end|>\n"
    out = run(["--text", s, "--json"]).stdout.decode()
    j = json.loads(out)
    record(j["ids"] == oracle.encode(s) and j["pieces"][:2] == ["<s>", "Hello"], f"--text --json: {out!r}")
    out = run(["--text", s, "--no-bos"]).stdout.decode().strip()
    record(out == ",".join(map(str, oracle.encode(s)[1:])), f"--no-bos: {out!r}")
    out = run(["--ids", ",".join(map(str, oracle.encode(s)))]).stdout.decode("utf-8")
    record(out == "<s>" + s + "\n", f"--ids: {out!r}")
    whole = "\r\n".join(corpus[:120]) + "  \t\r\n"
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", dir=TMP_ROOT, delete=False) as f:
        f.write(whole.encode("utf-8"))
        path = f.name
    try:
        out = run(["--file", path]).stdout.decode().strip()
        record(out == ",".join(map(str, oracle.encode(whole))), "--file encodes the file as-is")
    finally:
        os.unlink(path)
    out = run(["--chat", "--text", "你好,请介绍一下你自己"]).stdout.decode().strip()
    record(out == "1,92543,1008,364,77230,328,60836,70068,72329,92542,364,92543,525,11353,364", f"--chat: {out}")
    p = run(["--file", "-"], stdin=b"ok \xff\xfe", ok=False)
    err = p.stderr.decode(errors="replace")
    record(p.returncode == 1 and "error:" in err and "UTF-8" in err and "offset 3" in err,
           f"invalid UTF-8: rc {p.returncode}, {err!r}")
    p = run(["--ids", "1,92544"], ok=False)
    record(p.returncode == 1 and "out of range" in p.stderr.decode(), f"bad id: {p.stderr!r}")

    for msg in FAILURES[:20]:
        print("FAIL", msg)
    if len(FAILURES) > 20:
        print(f"... and {len(FAILURES) - 20} more")
    print(f"tokenizer oracle: {RESULTS['passed']} passed, {RESULTS['failed']} failed "
          f"({len(corpus)} corpus strings)")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - any crash is a failure with a message
        print(f"tokenizer oracle: error: {e}")
        print(f"tokenizer oracle: {RESULTS['passed']} passed, {RESULTS['failed'] + 1} failed")
        sys.exit(1)
