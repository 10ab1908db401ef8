#!/usr/bin/env python3
"""Hugging Face parity helper for tests/gpu/hf_parity.sh (needs torch, transformers, safetensors).

  hf_parity.py make OUTDIR                  random HF models (weights perturbed so logits are O(1..10))
                                            -> OUTDIR/hf_{gpt2,llama_gqa,llama_tied}
  hf_parity.py same-weights HF_A HF_B       the two folders' model.safetensors hold bit-identical
                                            tensors (ignoring non-parameter buffers)
  hf_parity.py compare HF_DIR LOGITS TOL    HF logits on LOGITS' tokens/mask vs LOGITS' logits
                                            (written by `rlhf_convert logits`); max |d| over real
                                            positions must be <= TOL
"""
import sys

import torch
from safetensors.torch import load_file


def make(out):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    models = {
        "gpt2": GPT2LMHeadModel(GPT2Config(
            vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
        "llama_gqa": LlamaForCausalLM(LlamaConfig(
            vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=64,
            rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=False)),
        "llama_tied": LlamaForCausalLM(LlamaConfig(
            vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
            rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True)),
    }
    for name, m in models.items():
        with torch.no_grad():
            for p in m.parameters():  # tied weights are one Parameter: perturbed once
                p.add_(torch.randn_like(p) * 0.1)
        m.save_pretrained(f"{out}/hf_{name}", safe_serialization=True)
        print(f"made {out}/hf_{name}")
    return 0


def ignorable(name):
    return name.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"))


def same_weights(a, b):
    ta = {k: v for k, v in load_file(f"{a}/model.safetensors").items() if not ignorable(k)}
    tb = {k: v for k, v in load_file(f"{b}/model.safetensors").items() if not ignorable(k)}
    ka, kb = set(ta), set(tb)
    if ka != kb:
        print(f"FAIL {a} vs {b}: names differ: only in A {sorted(ka - kb)}, only in B {sorted(kb - ka)}")
        return 1
    bad = [k for k in ka if ta[k].shape != tb[k].shape or not torch.equal(ta[k].float(), tb[k].float())]
    if bad:
        print(f"FAIL {a} vs {b}: tensors differ: {sorted(bad)}")
        return 1
    print(f"ok   {b}: {len(ka)} tensors bit-identical to {a}")
    return 0


def compare(hf_dir, logits_path, tol):
    from transformers import AutoModelForCausalLM

    d = load_file(logits_path)
    tokens, mask, ours = d["tokens"].long(), d["mask"].bool(), d["logits"].float()
    try:
        model = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    model.eval()
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


def main(argv):
    if len(argv) >= 2 and argv[0] == "make":
        return make(argv[1])
    if len(argv) >= 3 and argv[0] == "same-weights":
        return same_weights(argv[1], argv[2])
    if len(argv) >= 4 and argv[0] == "compare":
        return compare(argv[1], argv[2], float(argv[3]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
