#!/usr/bin/env python3
"""hf_rollout.py — the Hugging Face `generate` baseline for bench_rollout, on the same shapes.

Reads the spec bench_rollout writes with --spec (prompts as token lists, each row's response
length, max_new_tokens, temperature, the model config) and runs transformers' GPT2LMHeadModel
(random init from that config, as bench_rollout's model) with model.generate on the left-padded
prompt batch. Each row ends at its length: a logits processor forces the EOS token there (the EOS
the model would emit), and generate stops a row at EOS and the batch when every row has ended,
which is HF's static batch. Prints ONE JSON object: seconds (best of --iters),
useful_tokens_per_s (sum of the lengths / seconds), peak_memory_bytes on CUDA.
No network access is needed. (vLLM is not measured: the GPU image has no vllm package.)
"""
import argparse
import json
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    spec = json.load(open(a.spec))
    m = spec["model"]
    if m["family"] != "gpt2":
        sys.exit("hf_rollout.py: only gpt2-family specs (bench_rollout --family gpt2)")
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList

    eos = 0  # bench_rollout's pad/EOS id
    cfg = GPT2Config(vocab_size=m["vocab_size"], n_positions=m["max_seq_len"], n_embd=m["d_model"],
                     n_layer=m["n_layer"], n_head=m["n_head"], n_inner=m["d_ff"],
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, layer_norm_epsilon=m["norm_eps"], tie_word_embeddings=True,
                     bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    dev = torch.device(a.device)
    torch.manual_seed(spec["seed"])
    model = GPT2LMHeadModel(cfg).to(dev).eval()
    if a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    prompts = spec["prompts"]
    lengths = torch.tensor(spec["row_max_new_tokens"], device=dev)
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), eos, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
        mask[i, P - len(p):] = 1
    ids, mask = ids.to(dev), mask.to(dev)

    class EndAtLength(LogitsProcessor):
        """Row b emits EOS as its token number lengths[b] (1-based), never before."""
        def __call__(self, input_ids, scores):
            t = input_ids.shape[1] - P  # tokens generated so far
            scores[:, eos] = -float("inf")
            end = lengths == t + 1
            scores[end] = -float("inf")
            scores[end, eos] = 0.0
            return scores

    def run():
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                  temperature=max(spec["temperature"], 1e-5), top_k=0,
                                  max_new_tokens=spec["max_new_tokens"],
                                  logits_processor=LogitsProcessorList([EndAtLength()]),
                                  pad_token_id=eos, eos_token_id=eos)
    for _ in range(a.warmup):
        run()
    best = 1e300
    for _ in range(a.iters):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = run()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    gen = out[:, P:]  # a row's tokens up to and including its first EOS are its response
    got = sum(int((row == eos).nonzero()[0]) + 1 if (row == eos).any() else row.numel() for row in gen)
    useful = int(lengths.sum())
    res = {"bench": "hf_rollout", "transformers_version": transformers.__version__,
           "torch_version": torch.__version__, "threads": torch.get_num_threads(),
           "rows": len(prompts), "useful_tokens": useful, "generated_tokens_seen": got,
           "seconds": best, "useful_tokens_per_s": useful / best,
           "peak_memory_bytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else None}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
