#!/usr/bin/env python3
"""Golden logits from the official Hugging Face implementation, for `internlm validate --golden`.

Loads a checkpoint with transformers (trust_remote_code=True: the model's own modelling code),
renders each prompt of the prompt set (data/prompts.jsonl) exactly as the official tokenizer
does (its chat template for "messages", plain encoding with special tokens for "prompt"), runs
one forward over the whole prompt and writes, per prompt, in the format `internlm logits` writes:

    OUT/<id>.f32        raw little-endian float32 [T, V]: the logits of every position
    OUT/<id>.f32.json   {"shape": [T, V], "ids": [...], "dtype": "float32", "prompt_id": "<id>",
                         "model": ..., "backend": "transformers", "source": "..."}

Then, on the deployment under test:

    build/internlm validate --model DIR --golden OUT

compares that deployment's logits on the same ids with these (max abs / relative error,
KL divergence, top-1 agreement) and checks that its tokenizer gives the same ids.

Requires torch and transformers (pip or distribution packages); runs on CPU or CUDA. float32
(the default) is the exact reference; bfloat16 halves memory but adds torch's bf16 rounding.
"""
import argparse
import json
import os
import sys


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face checkpoint directory (or hub id)")
    p.add_argument("--out", required=True, help="output folder for <id>.f32 + <id>.f32.json")
    p.add_argument("--prompts", default=os.path.join(here, "..", "data", "prompts.jsonl"),
                   help="prompt set (JSONL, as internlm validate reads it)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype the model runs in (default float32: the exact reference)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--max-prompts", type=int, default=0, help="only the first N prompts (0: all)")
    p.add_argument("--max-tokens", type=int, default=0,
                   help="cut each prompt to its first N tokens (0: whole prompt)")
    return p.parse_args(argv)


def load_prompts(path):
    prompts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            j = json.loads(line)
            if "id" not in j or ("messages" not in j and "prompt" not in j):
                raise SystemExit(f"{path}:{n}: needs \"id\" and \"messages\" or \"prompt\"")
            prompts.append(j)
    return prompts


def main(argv):
    args = parse_args(argv)
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        print(f"error: hf_reference.py needs torch and transformers ({e}); install them, e.g. "
              "`pip install torch transformers sentencepiece`", file=sys.stderr)
        return 2

    prompts = load_prompts(args.prompts)
    if args.max_prompts > 0:
        prompts = prompts[:args.max_prompts]
    dtype = getattr(torch, args.dtype)
    tok = AutoTokenizer.from_pretrained(args.model, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype, trust_remote_code=True)
    model.to(args.device).eval()
    os.makedirs(args.out, exist_ok=True)
    source = (f"transformers {transformers.__version__}, torch {torch.__version__}, {args.dtype} on "
              f"{args.device}, trust_remote_code")
    for p in prompts:
        if "messages" in p:
            ids = tok.apply_chat_template(p["messages"], add_generation_prompt=True, tokenize=True)
        else:
            ids = tok(p["prompt"], add_special_tokens=True)["input_ids"]
        ids = [int(i) for i in ids]
        if args.max_tokens > 0:
            ids = ids[:args.max_tokens]
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=args.device)).logits[0]
        logits = logits.float().cpu().contiguous()
        T, V = logits.shape
        path = os.path.join(args.out, p["id"] + ".f32")
        with open(path, "wb") as f:
            f.write(logits.numpy().astype("<f4").tobytes())
        meta = {"shape": [T, V], "ids": ids, "dtype": "float32", "prompt_id": p["id"], "model": args.model,
                "backend": "transformers", "source": source}
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False)
        print(f"{p['id']}: {T} tokens -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
