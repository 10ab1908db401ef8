#!/usr/bin/env python3
"""Hugging Face parity helper for tests/gpu/hf_parity.sh (needs torch, transformers, safetensors).

  hf_parity.py make OUTDIR                  random HF models of every family (weights perturbed so
                                            logits are O(1..10)) -> OUTDIR/hf_<name>; prints names
  hf_parity.py names                        the names `make` writes, one per line
  hf_parity.py same-weights HF_A HF_B [bf16]
                                            the folders' weights (model.safetensors or shards with
                                            an index) are bit-identical (ignoring non-parameter
                                            buffers); bf16: B holds A rounded to bfloat16
  hf_parity.py compare HF_DIR LOGITS TOL    HF logits on LOGITS' tokens/mask vs LOGITS' logits
                                            (written by `rlhf_convert logits`); max |d| over real
                                            positions must be <= TOL
  hf_parity.py compare-greedy HF_DIR FILE   HF greedy continuation (argmax, full recompute per
                                            token) of FILE's prompts equals FILE's tokens
                                            (written by `rlhf_convert greedy`)
  hf_parity.py compare-scores HF_DIR FILE TOL
                                            AutoModelForSequenceClassification's score at the last
                                            non-pad token vs FILE's scores (`rlhf_convert logits`
                                            of a scalar checkpoint) minus config rlhf_score_bias
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file

V = 300
PAD = 258  # the byte tokenizer's pad id, which `rlhf_convert logits` keeps out of real tokens


def models():
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              LlamaForSequenceClassification, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification,
                              Qwen3Config, Qwen3ForCausalLM)

    small = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 max_position_embeddings=64)
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    rm = dict(num_labels=1, pad_token_id=PAD)  # reward models: "rm_" names
    return {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(
            vocab_size=V, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
        "llama_gqa": lambda: LlamaForCausalLM(LlamaConfig(
            **small, num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_theta=500.0, tie_word_embeddings=False)),
        "llama_tied": lambda: LlamaForCausalLM(LlamaConfig(
            **small, num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6,
            rope_theta=10000.0, tie_word_embeddings=True)),
        "llama3_bias": lambda: LlamaForCausalLM(LlamaConfig(
            **small, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            attention_bias=True, mlp_bias=True, rope_theta=500000.0, tie_word_embeddings=True,
            rope_scaling=llama3)),
        "llama_linear": lambda: LlamaForCausalLM(LlamaConfig(
            **small, num_attention_heads=4, num_key_value_heads=2,
            rope_scaling={"rope_type": "linear", "factor": 4.0})),
        "mistral": lambda: MistralForCausalLM(MistralConfig(
            **small, num_attention_heads=4, num_key_value_heads=2, sliding_window=None)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(
            **small, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
        "qwen3": lambda: Qwen3ForCausalLM(Qwen3Config(
            **small, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            tie_word_embeddings=True)),
        "rm_llama3": lambda: LlamaForSequenceClassification(LlamaConfig(
            **small, **rm, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
            rope_scaling=llama3)),
        "rm_qwen2": lambda: Qwen2ForSequenceClassification(Qwen2Config(
            **small, **rm, num_attention_heads=4, num_key_value_heads=2)),
    }


def make(out):
    torch.manual_seed(0)
    for name, build in models().items():
        m = build()
        with torch.no_grad():
            for p in m.parameters():  # tied weights are one Parameter: perturbed once
                p.add_(torch.randn_like(p) * 0.1)
        m.save_pretrained(f"{out}/hf_{name}", safe_serialization=True)
        print(f"made {out}/hf_{name}")
    return 0


def ignorable(name):
    return name.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"))


def load_weights(d):
    idx = f"{d}/model.safetensors.index.json"
    if os.path.exists(idx):
        out = {}
        for shard in sorted(set(json.load(open(idx))["weight_map"].values())):
            out.update(load_file(f"{d}/{shard}"))
        return out
    return load_file(f"{d}/model.safetensors")


def same_weights(a, b, bf16=False):
    ta = {k: v for k, v in load_weights(a).items() if not ignorable(k)}
    tb = {k: v for k, v in load_weights(b).items() if not ignorable(k)}
    ka, kb = set(ta), set(tb)
    if ka != kb:
        print(f"FAIL {a} vs {b}: names differ: only in A {sorted(ka - kb)}, only in B {sorted(kb - ka)}")
        return 1
    conv = (lambda t: t.to(torch.bfloat16)) if bf16 else (lambda t: t)
    bad = [k for k in ka if tb[k].dtype != conv(ta[k]).dtype or not torch.equal(conv(ta[k]), tb[k])]
    if bad:
        print(f"FAIL {a} vs {b}: tensors differ: {sorted(bad)}")
        return 1
    print(f"ok   {b}: {len(ka)} tensors bit-identical to {a}{' (as bf16)' if bf16 else ''}")
    return 0


def load(cls, hf_dir):
    try:
        m = cls.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        m = cls.from_pretrained(hf_dir, torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def compare(hf_dir, logits_path, tol):
    from transformers import AutoModelForCausalLM

    d = load_file(logits_path)
    tokens, mask, ours = d["tokens"].long(), d["mask"].bool(), d["logits"].float()
    model = load(AutoModelForCausalLM, hf_dir)
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(input_ids=tokens, attention_mask=mask.long(), position_ids=pos).logits.float()
    if ref.shape != ours.shape:
        print(f"FAIL {hf_dir}: HF logits {tuple(ref.shape)} vs ours {tuple(ours.shape)}")
        return 1
    diff = ((ref - ours).abs() * mask.unsqueeze(-1)).max().item()
    ok = diff == diff and diff <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {hf_dir} vs {logits_path}: max |dlogit| = {diff:.3e} over "
          f"{int(mask.sum())} real positions (max |logit| {ours.abs().max().item():.2f}, tol {tol:g})")
    return 0 if ok else 1


def compare_greedy(hf_dir, path):
    from transformers import AutoModelForCausalLM

    d = load_file(path)
    ours, pmask = d["tokens"].long(), d["prompt_mask"].bool()
    P, N = pmask.shape[1], ours.shape[1] - pmask.shape[1]
    model = load(AutoModelForCausalLM, hf_dir)
    seq, mask = ours[:, :P].clone(), pmask.long()
    with torch.no_grad():
        for _ in range(N):
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            nxt = model(input_ids=seq, attention_mask=mask, position_ids=pos).logits[:, -1].argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    same = torch.equal(seq, ours)
    first = "" if same else f" (first difference at new token {int((seq != ours).any(0).nonzero()[0]) - P})"
    print(f"{'ok  ' if same else 'FAIL'} {hf_dir}: greedy {N} tokens x {ours.shape[0]} rows "
          f"{'equal' if same else 'differ'}{first}")
    return 0 if same else 1


def compare_scores(hf_dir, path, tol):
    from transformers import AutoModelForSequenceClassification

    d = load_file(path)
    tokens, mask, ours = d["tokens"].long(), d["mask"].bool(), d["scores"].float()
    cfg = json.load(open(f"{hf_dir}/config.json"))
    model = load(AutoModelForSequenceClassification, hf_dir)
    pad = model.config.pad_token_id
    ids = tokens.masked_fill(~mask, pad)
    if (ids[:, -1] == pad).any():
        print(f"FAIL {path}: a real last token equals pad_token_id {pad}")
        return 1
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits.float()
    expect = ours - cfg.get("rlhf_score_bias", 0.0)
    diff = (ref[:, 0] - expect).abs().max().item()
    ok = ref.shape == (tokens.shape[0], 1) and diff == diff and diff <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {hf_dir} ({model.__class__.__name__}) vs {path}: max "
          f"|dscore| = {diff:.3e} over {tokens.shape[0]} rows (tol {tol:g})")
    return 0 if ok else 1


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "make" and len(argv) >= 2:
        return make(argv[1])
    if cmd == "names":
        print("\n".join(models()))
        return 0
    if cmd == "same-weights" and len(argv) >= 3:
        return same_weights(argv[1], argv[2], len(argv) > 3 and argv[3] == "bf16")
    if cmd == "compare" and len(argv) >= 4:
        return compare(argv[1], argv[2], float(argv[3]))
    if cmd == "compare-greedy" and len(argv) >= 3:
        return compare_greedy(argv[1], argv[2])
    if cmd == "compare-scores" and len(argv) >= 4:
        return compare_scores(argv[1], argv[2], float(argv[3]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
