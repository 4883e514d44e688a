#!/usr/bin/python3
"""numpy_ref: an independent float64 numpy implementation of the InternLM2 / InternLM2.5 forward pass.

It is the oracle the C++ engine's logits are tested against (tests/python/test_forward_vs_numpy.py).
Written from shared/spec/internlm2.md only (no code shared with the C++ engine):

  * config.json is read field by field (no HF config-class defaults);
  * safetensors is parsed here (8-byte LE header length, JSON header, data_offsets relative to the
    data section), single file or shards listed in model.safetensors.index.json; BF16 -> F32 by
    shifting the uint16 into the high half of a uint32; F16 and F32 are supported;
  * fused wqkv split per KV group (spec 5.1): each group g holds G query heads, then key head g,
    then value head g, hd rows each;
  * rotate-half RoPE with the cos/sin tables built in float32 as the official code does, dynamic NTK
    per spec 5.3 (per forward call, L = past_len + T; base(L) when L > M; cached keys keep the
    rotation they were given), linear scaling divides positions by the factor;
  * everything else in float64.

Library:   m = load_checkpoint(dir); logits, past = forward(m, ids, past=None)
CLI:       numpy_ref.py --model DIR --ids 1,2,3 [--prefill K] --out FILE
           (raw little-endian float32 [T, V] logits in FILE, {"shape": [T, V], "ids": [...]} in FILE.json)
Self test: numpy_ref.py --self-test
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {"BF16": 2, "F16": 2, "F32": 4}


def bf16_bits_to_f32(u16):
    """uint16 bfloat16 bit patterns -> float32 (exact): the bits become the high half of a uint32."""
    u16 = np.asarray(u16, dtype="<u2")
    return (u16.astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (used only to write test checkpoints)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def read_safetensors(path, dtypes_out=None):
    """Returns {name: float32 ndarray} for every tensor in one .safetensors file; the stored dtype
    of each tensor ("BF16", "F16", "F32") goes into dtypes_out when a dict is given."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
    data_start = 8 + n
    data_len = size - data_start
    mm = np.memmap(path, dtype=np.uint8, mode="r") if data_len > 0 else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        shape = [int(s) for s in info["shape"]]
        b, e = (int(v) for v in info["data_offsets"])
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * _ST_DTYPES[dt] or b < 0 or e > data_len:
            raise ValueError(f"{path}: tensor {name}: data_offsets {b},{e} do not match "
                             f"shape {shape} x {dt} within {data_len} data bytes")
        raw = mm[data_start + b:data_start + e]
        if dt == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2", count=count))
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2", count=count).astype(np.float32)
        else:
            arr = np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32)
        out[name] = arr.reshape(shape)
        if dtypes_out is not None:
            dtypes_out[name] = dt
    return out


def write_safetensors(path, tensors, dtype="F32"):
    """Writes {name: array} as safetensors (test helper; dtype BF16 | F16 | F32 for all tensors)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.asarray(arr, dtype=np.float32)
        if dtype == "BF16":
            blob = f32_to_bf16_bits(a).astype("<u2").tobytes()
        elif dtype == "F16":
            blob = a.astype("<f2").tobytes()
        else:
            blob = a.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for blob in blobs:
            f.write(blob)


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------


class Model:
    """Config fields + float32 weights; float64 copies are made on first use and kept."""

    def __init__(self, cfg, tensors, dtypes=None, files=None):
        self.cfg = cfg
        self.dtypes = dtypes or {}  # tensor name -> stored safetensors dtype
        self.files = files or []    # safetensors files read
        self.H = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.nh = int(cfg["num_attention_heads"])
        # HF: num_key_value_heads absent -> num_attention_heads (the only fallback it has).
        self.nkv = int(cfg["num_key_value_heads"]) if cfg.get("num_key_value_heads") is not None else self.nh
        if self.H % self.nh or self.nh % self.nkv:
            raise ValueError("hidden_size must divide by heads, heads by kv heads")
        self.hd = self.H // self.nh
        if self.hd % 2:
            raise ValueError("head_dim must be even")
        self.G = self.nh // self.nkv
        self.I = int(cfg["intermediate_size"])
        self.V = int(cfg["vocab_size"])
        self.eps = float(cfg["rms_norm_eps"])
        self.theta = float(cfg["rope_theta"])
        self.M = int(cfg["max_position_embeddings"])
        rs = cfg.get("rope_scaling")
        if rs is None:
            self.rope_type, self.rope_factor = None, 1.0
        else:
            if set(rs.keys()) != {"type", "factor"}:
                raise ValueError(f"rope_scaling must have exactly type and factor: {rs}")
            if rs["type"] not in ("dynamic", "linear"):
                raise ValueError(f"rope_scaling type {rs['type']!r} unsupported")
            self.rope_type, self.rope_factor = rs["type"], float(rs["factor"])
            if self.rope_factor < 1.0:
                raise ValueError("rope_scaling factor must be >= 1")
        self.bias = bool(cfg["bias"])
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act {act!r} unsupported")
        self.t32 = tensors
        self._t64 = {}
        self._check_shapes()

    def _check_shapes(self):
        H, I, V, hd, nh, nkv = self.H, self.I, self.V, self.hd, self.nh, self.nkv
        want = {"model.tok_embeddings.weight": (V, H), "model.norm.weight": (H,)}
        if not self.tie:
            want["output.weight"] = (V, H)
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            want[p + "attention_norm.weight"] = (H,)
            want[p + "attention.wqkv.weight"] = ((nh + 2 * nkv) * hd, H)
            want[p + "attention.wo.weight"] = (H, nh * hd)
            want[p + "ffn_norm.weight"] = (H,)
            want[p + "feed_forward.w1.weight"] = (I, H)
            want[p + "feed_forward.w3.weight"] = (I, H)
            want[p + "feed_forward.w2.weight"] = (H, I)
            if self.bias:
                want[p + "attention.wqkv.bias"] = ((nh + 2 * nkv) * hd,)
                want[p + "attention.wo.bias"] = (H,)
        for name, shape in want.items():
            if name not in self.t32:
                raise ValueError(f"missing tensor {name}")
            if tuple(self.t32[name].shape) != shape:
                raise ValueError(f"tensor {name}: shape {self.t32[name].shape}, expected {shape}")

    def w(self, name):
        a = self._t64.get(name)
        if a is None:
            a = np.ascontiguousarray(self.t32[name], dtype=np.float64)
            self._t64[name] = a
        return a

    def has(self, name):
        return name in self.t32

    def embed(self, ids):
        return self.t32["model.tok_embeddings.weight"][np.asarray(ids, dtype=np.int64)].astype(np.float64)

    def head(self):
        return self.w("model.tok_embeddings.weight" if self.tie else "output.weight")


def load_checkpoint(model_dir):
    with open(os.path.join(model_dir, "config.json"), "r", encoding="utf-8") as f:
        cfg = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    tensors, dtypes, files = {}, {}, []
    if os.path.exists(index):
        with open(index, "r", encoding="utf-8") as f:
            wmap = json.load(f)["weight_map"]
        for shard in sorted(set(wmap.values())):
            files.append(shard)
            part = read_safetensors(os.path.join(model_dir, shard), dtypes)
            for name, arr in part.items():
                if name in tensors:
                    raise ValueError(f"tensor {name} appears in more than one shard")
                tensors[name] = arr
        for name, shard in wmap.items():
            if name not in tensors:
                raise ValueError(f"index maps {name} to {shard}, which does not hold it")
    elif os.path.exists(single):
        files.append("model.safetensors")
        tensors = read_safetensors(single, dtypes)
    else:
        raise FileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    return Model(cfg, tensors, dtypes, files)


# --------------------------------------------------------------------------------------------
# math pieces
# --------------------------------------------------------------------------------------------


def ntk_base(theta, factor, M, hd, L):
    """Spec 5.3, python float math: base = theta * (f*L/M - (f-1)) ** (hd/(hd-2)) when L > M."""
    if L <= M:
        return theta
    return theta * ((factor * L / M) - (factor - 1)) ** (hd / (hd - 2))


def rope_tables(hd, base, positions, linear_factor=None):
    """cos/sin [len(positions), hd] built in float32 like the official code, returned as float64.

    inv_freq = 1 / (base ** (arange(0, hd, 2) / hd)) in float32; t = position in float32
    (divided by the factor in float32 for linear scaling); freqs = t * inv_freq in float32;
    emb = [freqs, freqs]; cos, sin in float32.
    """
    exps = np.arange(0, hd, 2, dtype=np.float32) / np.float32(hd)
    inv_freq = (np.float32(1.0) / (np.float32(base) ** exps)).astype(np.float32)
    t = np.asarray(positions, dtype=np.float32)
    if linear_factor is not None:
        t = (t / np.float32(linear_factor)).astype(np.float32)
    freqs = np.outer(t, inv_freq).astype(np.float32)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float64), np.sin(emb).astype(np.float64)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def apply_rope(x, cos, sin):
    """x [T, heads, hd]; cos/sin [T, hd]."""
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]


def wqkv_rows(nh, nkv, hd):
    """Row indices of the fused wqkv for q [nh, hd], k [nkv, hd], v [nkv, hd] (spec 5.1)."""
    G = nh // nkv
    q = np.empty((nh, hd), dtype=np.int64)
    k = np.empty((nkv, hd), dtype=np.int64)
    v = np.empty((nkv, hd), dtype=np.int64)
    d = np.arange(hd)
    for g in range(nkv):
        for s in range(G):
            q[g * G + s] = (g * (G + 2) + s) * hd + d
        k[g] = (g * (G + 2) + G) * hd + d
        v[g] = (g * (G + 2) + G + 1) * hd + d
    return q, k, v


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(z):
    return z / (1.0 + np.exp(-z))


def rope_for_call(m, past_len, T):
    """cos/sin for positions past_len .. past_len+T-1 in a forward of T new tokens after past_len."""
    L = past_len + T
    positions = np.arange(past_len, L)
    if m.rope_type == "dynamic":
        base = ntk_base(m.theta, m.rope_factor, m.M, m.hd, L)
        return rope_tables(m.hd, base, positions), base
    if m.rope_type == "linear":
        return rope_tables(m.hd, m.theta, positions, linear_factor=m.rope_factor), m.theta
    return rope_tables(m.hd, m.theta, positions), m.theta


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


def forward(m, ids, past=None):
    """Forward T new tokens after the cached ones.

    Returns (logits [T, V] float64, new_past). past = {"len": n, "k": [per layer [n, nkv, hd]],
    "v": [...]} with keys stored already rotated (they are never re-rotated).
    """
    ids = [int(i) for i in ids]
    T = len(ids)
    if T == 0:
        raise ValueError("forward needs at least one token")
    for i in ids:
        if not 0 <= i < m.V:
            raise ValueError(f"token id {i} outside [0, {m.V})")
    past_len = 0 if past is None else past["len"]
    L = past_len + T
    (cos, sin), _ = rope_for_call(m, past_len, T)
    qrows, krows, vrows = wqkv_rows(m.nh, m.nkv, m.hd)
    scale = 1.0 / math.sqrt(m.hd)
    # causal mask over all L keys: query i (absolute past_len+i) sees keys j <= past_len+i
    allowed = np.arange(L)[None, :] <= (past_len + np.arange(T))[:, None]  # [T, L]
    new_k, new_v = [], []
    x = m.embed(ids)
    for li in range(m.n_layers):
        p = f"model.layers.{li}."
        h = rmsnorm(x, m.w(p + "attention_norm.weight"), m.eps)
        qkv = h @ m.w(p + "attention.wqkv.weight").T
        if m.bias:
            qkv = qkv + m.w(p + "attention.wqkv.bias")
        q = qkv[:, qrows]  # [T, nh, hd]
        k = qkv[:, krows]  # [T, nkv, hd]
        v = qkv[:, vrows]
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if past is not None:
            k = np.concatenate([past["k"][li], k], axis=0)
            v = np.concatenate([past["v"][li], v], axis=0)
        new_k.append(k)
        new_v.append(v)
        out = np.empty((T, m.nh, m.hd))
        for hh in range(m.nh):
            kvh = hh // m.G
            s = (q[:, hh, :] @ k[:, kvh, :].T) * scale  # [T, L]
            s = np.where(allowed, s, -np.inf)
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(axis=1, keepdims=True)
            out[:, hh, :] = pr @ v[:, kvh, :]
        attn = out.reshape(T, m.nh * m.hd) @ m.w(p + "attention.wo.weight").T
        if m.bias:
            attn = attn + m.w(p + "attention.wo.bias")
        x = x + attn
        h = rmsnorm(x, m.w(p + "ffn_norm.weight"), m.eps)
        gate = h @ m.w(p + "feed_forward.w1.weight").T
        up = h @ m.w(p + "feed_forward.w3.weight").T
        x = x + (silu(gate) * up) @ m.w(p + "feed_forward.w2.weight").T
    x = rmsnorm(x, m.w("model.norm.weight"), m.eps)
    logits = x @ m.head().T
    return logits, {"len": L, "k": new_k, "v": new_v}


def run_ids(m, ids, prefill=None):
    """First `prefill` tokens in one forward (default: all), then one token per forward with the
    cache. Returns float64 logits [T, V]."""
    ids = list(ids)
    K = len(ids) if prefill is None else int(prefill)
    if not 1 <= K <= len(ids):
        raise ValueError(f"--prefill must be in [1, {len(ids)}], got {K}")
    logits, past = forward(m, ids[:K])
    rows = [logits]
    for t in ids[K:]:
        lg, past = forward(m, [t], past)
        rows.append(lg)
    return np.concatenate(rows, axis=0)


def write_logits(path, logits, ids):
    arr = np.ascontiguousarray(np.asarray(logits, dtype="<f4"))
    with open(path, "wb") as f:
        f.write(arr.tobytes())
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump({"shape": list(arr.shape), "ids": [int(i) for i in ids]}, f)


def read_logits(path):
    """Reads a logits dump (ours or the C++ tool's): returns (float32 [T, V], ids, meta)."""
    with open(path + ".json", "r", encoding="utf-8") as f:
        meta = json.load(f)
    T, V = (int(s) for s in meta["shape"])
    data = np.fromfile(path, dtype="<f4")
    if data.size != T * V:
        raise ValueError(f"{path}: {data.size} floats, expected {T}x{V}")
    return data.reshape(T, V), [int(i) for i in meta["ids"]], meta


# --------------------------------------------------------------------------------------------
# self test
# --------------------------------------------------------------------------------------------


def _naive_forward(m, ids, bases, linear_factor=None):
    """Slow, loop-based, cache-free forward where position p is rotated with bases[p]
    (keys included). Used to check the cache mechanics of forward() against the spec's closed
    form for NTK prefill-then-decode. Written independently of forward(): explicit row formula,
    per-element rotation, per-query softmax."""
    nh, nkv, hd, G = m.nh, m.nkv, m.hd, m.G
    T = len(ids)
    x = np.array([[float(v) for v in m.t32["model.tok_embeddings.weight"][i]] for i in ids])
    half = hd // 2

    def rot(vec, p):
        base = bases[p]
        c, s = rope_tables(hd, base, [p], linear_factor=linear_factor)
        out = np.empty(hd)
        for d in range(half):
            out[d] = vec[d] * c[0, d] - vec[d + half] * s[0, d]
            out[d + half] = vec[d + half] * c[0, d + half] + vec[d] * s[0, d + half]
        return out

    def rms(vec, w):
        ms = sum(float(t) * float(t) for t in vec) / len(vec)
        return np.array([w[j] * vec[j] / math.sqrt(ms + m.eps) for j in range(len(vec))])

    for li in range(m.n_layers):
        p = f"model.layers.{li}."
        Wqkv = m.w(p + "attention.wqkv.weight")
        qs = np.zeros((T, nh, hd))
        ks = np.zeros((T, nkv, hd))
        vs = np.zeros((T, nkv, hd))
        for t in range(T):
            h = rms(x[t], m.w(p + "attention_norm.weight"))
            for g in range(nkv):
                for s in range(G + 2):
                    for d in range(hd):
                        row = (g * (G + 2) + s) * hd + d
                        val = float(np.dot(Wqkv[row], h))
                        if m.bias:
                            val += m.w(p + "attention.wqkv.bias")[row]
                        if s < G:
                            qs[t, g * G + s, d] = val
                        elif s == G:
                            ks[t, g, d] = val
                        else:
                            vs[t, g, d] = val
            for hh in range(nh):
                qs[t, hh] = rot(qs[t, hh], t)
            for g in range(nkv):
                ks[t, g] = rot(ks[t, g], t)
        attn_cat = np.zeros((T, nh * hd))
        for t in range(T):
            for hh in range(nh):
                g = hh // G
                sc = [float(np.dot(qs[t, hh], ks[j, g])) / math.sqrt(hd) for j in range(t + 1)]
                mx = max(sc)
                ex = [math.exp(v - mx) for v in sc]
                z = sum(ex)
                o = np.zeros(hd)
                for j in range(t + 1):
                    o += (ex[j] / z) * vs[j, g]
                attn_cat[t, hh * hd:(hh + 1) * hd] = o
        Wo = m.w(p + "attention.wo.weight")
        for t in range(T):
            a = Wo @ attn_cat[t]
            if m.bias:
                a = a + m.w(p + "attention.wo.bias")
            x[t] = x[t] + a
            h = rms(x[t], m.w(p + "ffn_norm.weight"))
            g1 = m.w(p + "feed_forward.w1.weight") @ h
            u3 = m.w(p + "feed_forward.w3.weight") @ h
            act = np.array([gv / (1.0 + math.exp(-gv)) for gv in g1]) * u3
            x[t] = x[t] + m.w(p + "feed_forward.w2.weight") @ act
    head = m.head()
    return np.array([head @ rms(x[t], m.w("model.norm.weight")) for t in range(T)])


def _toy_config(V=96, H=32, nh=4, nkv=2, I=48, layers=2, M=16, rope_scaling=None, bias=False, tie=False):
    return {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "hidden_size": H, "num_hidden_layers": layers, "num_attention_heads": nh,
        "num_key_value_heads": nkv, "intermediate_size": I, "vocab_size": V,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": M,
        "rope_scaling": rope_scaling, "bias": bias, "tie_word_embeddings": tie,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }


def _toy_tensors(cfg, seed=0, std=0.2):
    rng = np.random.default_rng(seed)
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    t = {"model.tok_embeddings.weight": rng.normal(0, 1.0, (V, H)),
         "model.norm.weight": 1 + rng.normal(0, 0.1, H)}
    if not cfg["tie_word_embeddings"]:
        t["output.weight"] = rng.normal(0, std, (V, H))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "attention_norm.weight"] = 1 + rng.normal(0, 0.1, H)
        t[p + "attention.wqkv.weight"] = rng.normal(0, std, ((nh + 2 * nkv) * hd, H))
        t[p + "attention.wo.weight"] = rng.normal(0, std, (H, nh * hd))
        t[p + "ffn_norm.weight"] = 1 + rng.normal(0, 0.1, H)
        t[p + "feed_forward.w1.weight"] = rng.normal(0, std, (I, H))
        t[p + "feed_forward.w3.weight"] = rng.normal(0, std, (I, H))
        t[p + "feed_forward.w2.weight"] = rng.normal(0, std, (H, I))
        if cfg["bias"]:
            t[p + "attention.wqkv.bias"] = rng.normal(0, std, (nh + 2 * nkv) * hd)
            t[p + "attention.wo.bias"] = rng.normal(0, std, H)
    return {k: np.asarray(v, dtype=np.float32) for k, v in t.items()}


def write_toy_checkpoint(out_dir, cfg, tensors, dtype="F32", shards=1):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for stale in ("model.safetensors", "model.safetensors.index.json"):
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    if shards <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, dtype)
        return
    names = list(tensors.keys())
    wmap = {}
    for si in range(shards):
        part = names[si::shards]
        fn = f"model-{si + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(os.path.join(out_dir, fn), {n: tensors[n] for n in part}, dtype)
        for n in part:
            wmap[n] = fn
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def self_test(verbose=True):
    failures = []
    n_checks = [0]

    def check(name, ok, detail=""):
        n_checks[0] += 1
        if verbose or not ok:
            print(f"  [{'ok' if ok else 'FAIL'}] {name}{(': ' + detail) if detail else ''}")
        if not ok:
            failures.append(name)

    # 1. NTK base values from the spec.
    for L, want in [(129, 1.016675e6), (200, 2.234513e6), (300, 4.022668e6)]:
        got = ntk_base(1e6, 2.0, 128, 32, L)
        check(f"ntk_base tiny L={L}", abs(got / want - 1) < 5e-7, f"{got:.7e} vs {want:.6e}")
    for L, want in [(40000, 1.4498e6), (49152, 2.0221e6), (65536, 3.0528e6)]:
        got = ntk_base(1e6, 2.0, 32768, 128, L)
        check(f"ntk_base 7B L={L}", abs(got / want - 1) < 5e-5, f"{got:.5e} vs {want:.4e}")
    check("ntk_base L<=M is theta", ntk_base(1e6, 2.0, 128, 32, 128) == 1e6 and ntk_base(1e6, 2.0, 128, 32, 5) == 1e6)
    # no discontinuity at M+1 that would be too big: base(M+1) slightly above theta
    check("ntk_base(M+1) just above theta", 1e6 < ntk_base(1e6, 2.0, 128, 32, 129) < 1.02e6)

    # 2. wqkv row mapping on a toy: nh=4, nkv=2, hd=2 -> G=2, block of 4 slots x 2 rows = 8 rows.
    # Written out by hand from the spec's prose: group 0 = q0, q1, k0, v0; group 1 = q2, q3, k1, v1.
    q, k, v = wqkv_rows(4, 2, 2)
    check("wqkv q rows", q.tolist() == [[0, 1], [2, 3], [8, 9], [10, 11]], str(q.tolist()))
    check("wqkv k rows", k.tolist() == [[4, 5], [12, 13]], str(k.tolist()))
    check("wqkv v rows", v.tolist() == [[6, 7], [14, 15]], str(v.tolist()))
    # 7B shape: 8 groups of 6 slots x 128 rows = 6144 rows, a permutation of all rows.
    q, k, v = wqkv_rows(32, 8, 128)
    allr = np.concatenate([q.ravel(), k.ravel(), v.ravel()])
    check("wqkv 7B rows are a permutation of 6144", sorted(allr.tolist()) == list(range(6144)))
    check("wqkv 7B: q head 5 = group 1 slot 1", q[5, 0] == (1 * 6 + 1) * 128 and k[1, 0] == (6 + 4) * 128
          and v[7, 127] == 6143)
    # tiny preset: H 256, nh 8, nkv 2, hd 32, 12 slots per group
    q, k, v = wqkv_rows(8, 2, 32)
    check("wqkv tiny: k0 at slot 4, v0 slot 5, q4 slot 6, k1 slot 10",
          k[0, 0] == 4 * 32 and v[0, 0] == 5 * 32 and q[4, 0] == 6 * 32 and k[1, 0] == 10 * 32 and v[1, 31] == 383)

    # 3. RoPE rotate-half on a toy vector: hd 4, base 100 -> inv_freq [1, 0.1]; position 1.
    x = np.array([1.0, 2.0, 3.0, 4.0])
    c, s = rope_tables(4, 100.0, [1])
    got = apply_rope(x[None, None, :], c, s)[0, 0]
    want = np.array([math.cos(1) - 3 * math.sin(1), 2 * math.cos(0.1) - 4 * math.sin(0.1),
                     3 * math.cos(1) + 1 * math.sin(1), 4 * math.cos(0.1) + 2 * math.sin(0.1)])
    check("rope rotate-half toy", np.max(np.abs(got - want)) < 1e-6, f"{got} vs {want}")
    c, s = rope_tables(4, 100.0, [0])
    check("rope position 0 is identity", np.array_equal(apply_rope(x[None, None, :], c, s)[0, 0], x))
    # float32 tables: the angle p*inv_freq is rounded to float32 (visible at large p)
    # float32 tables: inv_freq, the angle p*inv_freq, cos and sin are float32 values (visible at
    # large p: the float32 angle differs from the float64 one by far more than 1e-9)
    c, s = rope_tables(32, 1e6, [30000])
    inv5 = np.float32(1.0) / (np.float32(1e6) ** (np.float32(10) / np.float32(32)))
    a32 = np.float32(np.float32(30000) * np.float32(inv5))
    f64 = math.cos(30000 * 1e6 ** (-10 / 32))
    check("rope tables are float32 values", c.dtype == np.float64 and c[0, 5] == float(np.cos(a32))
          and c[0, 5] == c[0, 21] and abs(c[0, 5] - f64) > 1e-9, f"{c[0, 5]!r} vs f64 {f64!r}")
    # relative rotation property: <R_p q, R_r k> depends on p - r only (same base)
    rng = np.random.default_rng(1)
    qv, kv = rng.normal(size=32), rng.normal(size=32)
    def dotpr(pq, pk):
        cq, sq = rope_tables(32, 1e4, [pq])
        ck, sk = rope_tables(32, 1e4, [pk])
        return float(apply_rope(qv[None, None], cq, sq)[0, 0] @ apply_rope(kv[None, None], ck, sk)[0, 0])
    check("rope relative-position property", abs(dotpr(7, 3) - dotpr(14, 10)) < 1e-4)
    # linear: position p with factor 2 equals position p/2 unscaled
    c1, s1 = rope_tables(32, 1e4, [10], linear_factor=2.0)
    c2, s2 = rope_tables(32, 1e4, [5])
    check("rope linear:2 at p=10 equals p=5", np.array_equal(c1, c2) and np.array_equal(s1, s2))

    # 4. safetensors: BF16 bit conversion and round trips (single, sharded, bf16, f16, f32).
    bits = np.array([0x3F80, 0xC000, 0x3F81, 0x0000, 0x8000, 0x7F80], dtype=np.uint16)
    vals = bf16_bits_to_f32(bits)
    check("bf16 bits -> f32", vals[:3].tolist() == [1.0, -2.0, 1.0078125] and vals[3] == 0.0
          and np.signbit(vals[4]) and np.isinf(vals[5]))
    tmp = tempfile.mkdtemp(prefix="numpy_ref_selftest_")
    cfg = _toy_config(rope_scaling={"type": "dynamic", "factor": 2.0})
    tens = _toy_tensors(cfg, seed=3)
    tens_bf = {n: bf16_bits_to_f32(f32_to_bf16_bits(a)).reshape(a.shape) for n, a in tens.items()}
    for dt, sh in [("F32", 1), ("BF16", 1), ("BF16", 3), ("F16", 2)]:
        d = os.path.join(tmp, f"ck_{dt}_{sh}")
        write_toy_checkpoint(d, cfg, tens, dtype=dt, shards=sh)
        m = load_checkpoint(d)
        ref = tens if dt == "F32" else tens_bf if dt == "BF16" else {n: a.astype(np.float16).astype(np.float32) for n, a in tens.items()}
        same = set(m.t32) == set(ref) and all(np.array_equal(m.t32[n], ref[n]) for n in ref)
        check(f"safetensors round trip {dt} shards={sh}", same)

    # 5. forward checks on a toy model (M = 16, dynamic NTK factor 2): forward() vs the naive
    # loop implementation with explicit per-position bases (the spec's closed form).
    m = load_checkpoint(os.path.join(tmp, "ck_F32_1"))
    rng = np.random.default_rng(7)
    ids = rng.integers(0, cfg["vocab_size"], 24).tolist()
    th, f, M, hd = m.theta, m.rope_factor, m.M, m.hd
    # L <= M: one-shot == prefill 1 == prefill 5 == chunked; all = naive with theta
    short = ids[:14]
    full = run_ids(m, short)
    naive = _naive_forward(m, short, [th] * len(short))
    check("forward == naive (L <= M)", _rel(full, naive) < 1e-12, f"rel {_rel(full, naive):.2e}")
    for K in (1, 5):
        inc = run_ids(m, short, prefill=K)
        check(f"L <= M: prefill-all == prefill {K} then decode", _rel(inc, full) < 1e-12, f"rel {_rel(inc, full):.2e}")
    # L > M: full prefill of 24 -> every position uses base(24)
    full = run_ids(m, ids)
    b24 = ntk_base(th, f, M, hd, 24)
    naive = _naive_forward(m, ids, [b24] * 24)
    check("NTK full prefill == naive with base(L) at every position", _rel(full, naive) < 1e-12,
          f"rel {_rel(full, naive):.2e}")
    wrong = _naive_forward(m, ids, [ntk_base(th, f, M, hd, p + 1) for p in range(24)])
    check("NTK full prefill != per-position base", _rel(full, wrong) > 1e-4, f"rel {_rel(full, wrong):.2e}")
    # prefill K then decode: position p uses base(K) if p < K else base(p + 1)
    for K in (10, 20):
        inc = run_ids(m, ids, prefill=K)
        bases = [ntk_base(th, f, M, hd, K) if p < K else ntk_base(th, f, M, hd, p + 1) for p in range(24)]
        naive = np.concatenate([_naive_forward(m, ids[:t + 1], bases)[t:t + 1] for t in range(24)], axis=0)
        check(f"NTK prefill {K} then decode == closed form", _rel(inc, naive) < 1e-12, f"rel {_rel(inc, naive):.2e}")
        # rows that end at L <= M agree with full prefill? no: full prefill uses base(24) for them.
        d_late = _rel(inc[max(K, M):], full[max(K, M):])
        check(f"NTK prefill {K} differs from one-shot (L > M)", d_late > 1e-4, f"rel {d_late:.2e}")
    # GQA with G = 1 and G = nh (MQA), bias, tie: forward == naive
    for name, kw in [("MHA nkv=nh", dict(nkv=4)), ("MQA nkv=1", dict(nkv=1)),
                     ("G=4 nh=8 nkv=2", dict(H=64, nh=8, nkv=2)),
                     ("bias", dict(bias=True)), ("tie", dict(tie=True)),
                     ("linear:2", dict(rope_scaling={"type": "linear", "factor": 2.0}))]:
        c2 = _toy_config(layers=1, **kw)
        d = os.path.join(tmp, "ck_" + name.split()[0].replace(":", "_"))
        write_toy_checkpoint(d, c2, _toy_tensors(c2, seed=11), dtype="F32")
        m2 = load_checkpoint(d)
        T = 20
        lf = m2.rope_factor if m2.rope_type == "linear" else None
        b = _naive_forward(m2, ids[:T], [m2.theta] * T, linear_factor=lf)
        for K in (T, 7):
            a = run_ids(m2, ids[:T], prefill=K)
            check(f"{name}: forward (prefill {K}) == naive", _rel(a, b) < 1e-12, f"rel {_rel(a, b):.2e}")
        if lf is not None:
            plain = _naive_forward(m2, ids[:T], [m2.theta] * T)
            check(f"{name}: differs from unscaled", _rel(b, plain) > 1e-4, f"rel {_rel(b, plain):.2e}")
    # CLI round trip: write + read logits
    path = os.path.join(tmp, "logits.bin")
    write_logits(path, full, ids)
    lg, rid, meta = read_logits(path)
    check("logits file round trip", rid == ids and meta["shape"] == [24, cfg["vocab_size"]]
          and np.array_equal(lg, full.astype(np.float32)))

    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"numpy_ref self-test: {n_checks[0] - len(failures)} passed, {len(failures)} failed")
    return not failures


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (config.json + safetensors)")
    ap.add_argument("--ids", help="comma-separated token ids")
    ap.add_argument("--prefill", type=int, default=None,
                    help="first K tokens in one forward, then one token per forward (default: all)")
    ap.add_argument("--out", help="output file: raw LE float32 [T, V]; FILE.json gets shape and ids")
    ap.add_argument("--self-test", action="store_true", help="run the built-in checks and exit")
    a = ap.parse_args(argv)
    if a.self_test:
        return 0 if self_test() else 1
    if not (a.model and a.ids and a.out):
        ap.error("--model, --ids and --out are required (or --self-test)")
    ids = [int(s) for s in a.ids.split(",") if s.strip() != ""]
    m = load_checkpoint(a.model)
    logits = run_ids(m, ids, a.prefill)
    write_logits(a.out, logits, ids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
