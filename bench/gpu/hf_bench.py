#!/usr/bin/env python3
"""hf_bench.py — the Hugging Face transformers baseline for bench_train / bench_generate.

Same configurations as the C++ benchmarks (GPT-2 presets, random init, random tokens), run on
the same GPU in the same job by bench/gpu/run.sh. Prints ONE JSON object on stdout with the
parameters and the figures, using the same keys as the C++ binaries:

  --mode train     forward (labels -> HF's shifted LM loss) + backward + clip_grad_norm_(1.0)
                   + torch.optim.AdamW step, under torch.autocast(cuda, bf16) with fp32 weights
                   (what HF Trainer's bf16=True does). Keys: tokens_per_s, step_ms,
                   flops_per_token, achieved_flops, matmul_peak_flops, mfu, peak_memory_bytes.
  --mode generate  model.generate(do_sample, temperature 1, top-k, no EOS stop) on bf16 weights.
                   Keys: tokens_per_s, prefill_ms (generate with 1 new token),
                   ms_per_decode_step ((t(N) - t(1)) / (N - 1)), decode_tokens_per_s,
                   peak_memory_bytes (torch.cuda.max_memory_allocated).

The FLOP formula is the one in bench/bench_common.h: 6·N + 12·n_layer·d_model·T per token, with
N = all parameters minus the position-embedding table (the tied embedding counts once).
No network access is needed: the model is built from a config, never downloaded.
"""
import argparse
import json
import sys
import time

import torch

PRESETS = {
    "tiny": dict(n_layer=2, n_embd=128, n_head=4, vocab_size=259, n_positions=256),
    "gpt2-124m": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
    "gpt2-1.5b": dict(n_layer=48, n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024),
}


def build_model(preset, device, seed):
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    p = PRESETS[preset]
    cfg = GPT2Config(
        vocab_size=p["vocab_size"], n_positions=p["n_positions"], n_embd=p["n_embd"],
        n_layer=p["n_layer"], n_head=p["n_head"], n_inner=4 * p["n_embd"],
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    torch.manual_seed(seed)
    with torch.device(device):
        try:  # SDPA attention (flash path), as ours uses; the default in recent versions
            model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
        except Exception:  # older/newer API without the keyword
            model = GPT2LMHeadModel(cfg)
    attn = getattr(model.config, "_attn_implementation", None)
    return model, p, {"transformers_version": transformers.__version__, "attn_implementation": attn}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device, dtype, n, iters):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = a @ b
    best = 0.0
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            c = a @ b
        sync(device)
        best = max(best, 2.0 * n ** 3 * iters / (time.perf_counter() - t0))
    del a, b, c
    return best


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mem(device):
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def bench_train(args, device):
    model, p, info = build_model(args.preset, device, args.seed)
    model.train()
    n_params = sum(t.numel() for t in model.parameters())
    n_matmul = n_params - p["n_positions"] * p["n_embd"]  # minus wpe (a lookup, no matmul)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    g = torch.Generator().manual_seed(args.seed + 1)
    tokens = torch.randint(p["vocab_size"], (args.batch, args.seq_len), generator=g).to(device)
    use_ac = args.dtype == "bf16"
    last = [0.0]

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_ac):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        last[0] = loss.item()

    for _ in range(args.warmup):
        step()
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync(device)
    secs = time.perf_counter() - t0
    mem = peak_mem(device)
    peak_n = args.peak_n or (8192 if device.type == "cuda" else 1024)
    peak_iters = args.peak_iters or (50 if device.type == "cuda" else 8)
    peak = matmul_peak_flops(device, torch.bfloat16 if use_ac else torch.float32, peak_n, peak_iters)
    tps = args.batch * args.seq_len * args.iters / secs
    fpt = 6.0 * n_matmul + 12.0 * p["n_layer"] * p["n_embd"] * args.seq_len
    return dict(info, tokens_per_s=tps, step_ms=secs / args.iters * 1e3, flops_per_token=fpt,
                achieved_flops=fpt * tps, matmul_peak_flops=peak, mfu=fpt * tps / peak,
                final_loss=last[0], peak_memory_bytes=mem, n_params=n_params,
                n_matmul_params=n_matmul,
                precision="bf16 autocast, fp32 master weights" if use_ac else "fp32")


def bench_generate(args, device):
    model, p, info = build_model(args.preset, device, args.seed)
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.eval()
    n_params = sum(t.numel() for t in model.parameters())
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = torch.randint(p["vocab_size"], (args.batch, args.prompt_len), generator=g).to(device)
    mask = torch.ones_like(prompts)
    # No EOS: every row generates exactly max_new_tokens, as ours with eos_id = -1.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    def gen(n, seed):
        torch.manual_seed(seed)
        out = model.generate(input_ids=prompts, attention_mask=mask, do_sample=True,
                             temperature=1.0, top_k=args.top_k, top_p=1.0, max_new_tokens=n,
                             eos_token_id=None, pad_token_id=0)
        return out

    seed = args.seed
    with torch.no_grad():
        for _ in range(args.warmup):
            gen(1, seed := seed + 1)
            gen(args.new_tokens, seed := seed + 1)
        reset_peak(device)
        t_one = t_full = 0.0
        for _ in range(args.iters):
            sync(device)
            t0 = time.perf_counter()
            gen(1, seed := seed + 1)
            sync(device)
            t_one += time.perf_counter() - t0
            t0 = time.perf_counter()
            out = gen(args.new_tokens, seed := seed + 1)
            sync(device)
            t_full += time.perf_counter() - t0
            if out.shape[1] != args.prompt_len + args.new_tokens:
                raise RuntimeError(f"generate returned {out.shape[1] - args.prompt_len} new "
                                   f"tokens, expected {args.new_tokens}")
    t_one /= args.iters
    t_full /= args.iters
    step_ms = max(0.0, t_full - t_one) / (args.new_tokens - 1) * 1e3
    return dict(info, tokens_per_s=args.batch * args.new_tokens / t_full, generate_s=t_full,
                prefill_ms=t_one * 1e3, ms_per_decode_step=step_ms,
                decode_tokens_per_s=args.batch * 1e3 / step_ms if step_ms > 0 else 0.0,
                peak_memory_bytes=peak_mem(device), n_params=n_params)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["train", "generate"], required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-124m")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--peak-n", type=int, default=0)
    ap.add_argument("--peak-iters", type=int, default=0)
    args = ap.parse_args()
    if args.mode == "generate" and args.new_tokens < 2:
        ap.error("--new-tokens must be >= 2")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    figures = bench_train(args, device) if args.mode == "train" else bench_generate(args, device)
    params = {k: v for k, v in vars(args).items()}
    params.update(torch_version=torch.__version__, device=str(device),
                  gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    out = {"bench": f"hf_{args.mode}", "params": params}
    out.update(figures)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
