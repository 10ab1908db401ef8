#!/usr/bin/env python3
"""Hugging Face parity with transformers itself, every family (needs torch, transformers and
safetensors). Driven by tests/gpu/hf_parity.sh; see that script for what is checked.

  hf_parity.py all BIN_DIR TMP TOL [--devices cpu,cuda] [--stories DIR] [--jobs N]
                                            the whole suite in this one process: makes the HF
                                            models, runs BIN_DIR/rlhf_convert (from-hf, to-hf,
                                            logits, greedy, init, from-llama2c) as subprocesses,
                                            up to N at a time (default: the CPU count + 1),
                                            compares, prints one line per check and a summary;
                                            exit 1 when any check fails, 2 on bad usage/setup
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
The single-check commands are for debugging one case by hand; `all` is what the scripts run.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import traceback

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
try:
    import torch
    import transformers
    from safetensors.torch import load_file
except ImportError as e:
    print(f"FAIL: hf_parity needs {sys.executable} with torch, transformers and safetensors ({e})",
          file=sys.stderr)
    sys.exit(2)
transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)  # tiny models; with our runs alongside, 2+ threads spin-wait: 100x slower

V = 300
PAD = 258  # the byte tokenizer's pad id, which `rlhf_convert logits` keeps out of real tokens
HERE = os.path.dirname(os.path.abspath(__file__))
STORIES = os.path.normpath(os.path.join(HERE, "../../../shared/data/stories260K"))
# What our binary is asked for; HF sees the same tokens (they are in the files).
LOGITS_ARGS = ["--batch", "3", "--len", "24", "--seed", "7"]  # odd rows left-padded
GREEDY_ARGS = ["--batch", "3", "--len", "8", "--new", "32", "--seed", "5"]

# `rlhf_convert init` configs, every family (llama: llama3 scaling, head_dim 32 != 64/4, biases;
# qwen3: one kv head, head_dim 32, linear scaling).
INIT_BASE = {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 128, "max_seq_len": 64}
INIT_CFG = {
    "gpt2": {},
    "llama": {"n_kv_head": 2, "tie_embeddings": False, "rope_theta": 1000.0,
              "head_dim_override": 32, "qkv_bias": True, "o_bias": True,
              "rope_scaling": {"type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
    "mistral": {"n_kv_head": 2, "tie_embeddings": False},
    "qwen2": {"n_kv_head": 2},
    "qwen3": {"n_kv_head": 1, "head_dim_override": 32,
              "rope_scaling": {"type": "linear", "factor": 2.0}},
}


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
    return True


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
        return False
    conv = (lambda t: t.to(torch.bfloat16)) if bf16 else (lambda t: t)
    bad = [k for k in ka if tb[k].dtype != conv(ta[k]).dtype or not torch.equal(conv(ta[k]), tb[k])]
    if bad:
        print(f"FAIL {a} vs {b}: tensors differ: {sorted(bad)}")
        return False
    print(f"ok   {b}: {len(ka)} tensors bit-identical to {a}{' (as bf16)' if bf16 else ''}")
    return True


_loaded = {}  # (class, folder) -> model: a folder is compared more than once (logits, greedy, devices)


def load(cls, hf_dir):
    key = (cls.__name__, os.path.abspath(hf_dir))
    if key not in _loaded:
        try:
            m = cls.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
        except TypeError:
            m = cls.from_pretrained(hf_dir, torch_dtype=torch.float32, attn_implementation="eager")
        _loaded[key] = m.eval()
    return _loaded[key]


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
        return False
    diff = ((ref - ours).abs() * mask.unsqueeze(-1)).max().item()
    ok = diff == diff and diff <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {hf_dir} vs {logits_path}: max |dlogit| = {diff:.3e} over "
          f"{int(mask.sum())} real positions (max |logit| {ours.abs().max().item():.2f}, tol {tol:g})")
    return ok


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
    print(f"{'ok  ' if same else 'FAIL'} {hf_dir} vs {path}: greedy {N} tokens x {ours.shape[0]} rows "
          f"{'equal' if same else 'differ'}{first}")
    return same


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
        return False
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits.float()
    expect = ours - cfg.get("rlhf_score_bias", 0.0)
    diff = (ref[:, 0] - expect).abs().max().item()
    ok = ref.shape == (tokens.shape[0], 1) and diff == diff and diff <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {hf_dir} ({model.__class__.__name__}) vs {path}: max "
          f"|dscore| = {diff:.3e} over {tokens.shape[0]} rows (tol {tol:g})")
    return ok


class Suite:
    """Our binary's runs go to a thread pool (each is a separate process, mostly libtorch start-up),
    submitted in the order the checks consume them, a run after the run it needs; the main thread
    does the HF side and prints, in a fixed order, while later runs proceed."""

    def __init__(self, bin_dir, tmp, tol, devices, jobs):
        self.conv = os.path.join(bin_dir, "rlhf_convert")
        self.tmp, self.tol, self.devices = tmp, tol, devices
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        self.checks = []  # (label, ok)
        # Each run is an MPI singleton: without this Open MPI forks an `orted` for every one.
        self.env = {"OMPI_MCA_ess_singleton_isolated": "1", **os.environ}
        self.reported = set()  # failed runs already counted (a run's output may serve two checks)

    def _run(self, args, after):
        if after is not None and not after.result()[0]:
            return (False, None, None)  # what it needs failed (reported there): skipped
        p = subprocess.run([self.conv] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=self.env)
        return (p.returncode == 0, "rlhf_convert " + " ".join(args),
                None if p.returncode == 0 else f"{p.stderr}{p.stdout}(exit {p.returncode})")

    def ours(self, *args, after=None):
        """Submit `rlhf_convert ARGS` (after the run `after`, when given, succeeded)."""
        return self.pool.submit(self._run, list(args), after)

    def done(self, fut):
        """Wait for a run: True when it succeeded; a failure is a failed check; a skip is silent."""
        ok, cmd, err = fut.result()
        if not ok and cmd is not None and fut not in self.reported:
            self.reported.add(fut)
            sys.stdout.flush()
            sys.stderr.write(err if err.endswith("\n") else err + "\n")
            print(f"FAIL: {cmd}")
            self.checks.append((cmd, False))
        return ok

    def check(self, label, fn, *args):
        try:
            ok = bool(fn(*args))
        except Exception as e:  # a load or forward that raises is that check's failure
            traceback.print_exc()
            print(f"FAIL {label}: {type(e).__name__}: {e}")
            ok = False
        self.checks.append((label, ok))
        sys.stdout.flush()
        return ok

    def p(self, name):
        return os.path.join(self.tmp, name)

    def submit_logits(self, ck, tag, kind, after):
        """Our logits (or scores) of checkpoint ck per device -> {dev: (file, future)}."""
        return {dev: (self.p(f"logits_{tag}_{dev}.safetensors"),
                      self.ours("logits", "--in", ck, "--out", self.p(f"logits_{tag}_{dev}.safetensors"),
                                "--device", dev, *LOGITS_ARGS, after=after))
                for dev in self.devices}

    def check_logits(self, hf_dir, runs, kind):
        for dev, (path, fut) in runs.items():
            if not self.done(fut):
                continue
            if kind == "scores":
                self.check(f"{hf_dir} vs {path} scores", compare_scores, hf_dir, path, self.tol)
            else:
                self.check(f"{hf_dir} vs {path} logits", compare, hf_dir, path, self.tol)

    def run(self, stories_dir):
        names = list(models())
        self.check(f"make {self.tmp}/hf_*", make, self.tmp)
        if not self.checks[-1][1]:
            return
        # Submit every run of ours up front, in the order the checks below consume them.
        plan = {}
        for name in names:
            kind = "scores" if name.startswith("rm_") else "logits"
            ck = self.p(f"ck_{name}")
            f_in = self.ours("from-hf", "--in", self.p(f"hf_{name}"), "--out", ck, "--tokenizer", "byte")
            logits = self.submit_logits(ck, name, kind, f_in)
            greedy = {}
            if kind == "logits":
                for dev in self.devices:
                    path = self.p(f"greedy_{name}_{dev}.safetensors")
                    greedy[dev] = (path, self.ours("greedy", "--in", ck, "--out", path, "--device", dev,
                                                   *GREEDY_ARGS, after=f_in))
            f_out = self.ours("to-hf", "--in", ck, "--out", self.p(f"rt_{name}"), after=f_in)
            plan[name] = (kind, f_in, logits, greedy, f_out)
        f_shard = self.ours("to-hf", "--in", self.p("ck_qwen3"), "--out", self.p("shard_qwen3"),
                            "--max-shard-mb", "0.05", after=plan["qwen3"][1])
        f_bf16 = self.ours("to-hf", "--in", self.p("ck_llama3_bias"), "--out", self.p("bf16_llama3"),
                           "--dtype", "bf16", after=plan["llama3_bias"][1])
        inits = []
        for fam, extra in INIT_CFG.items():
            for kind in ("causal_lm", "scalar"):
                tag = f"init_{fam}_{kind}"
                f_init = self.ours("init", "--family", fam, "--tokenizer", "byte", "--seed", "3",
                                   "--kind", kind, "--config-json", json.dumps({**INIT_BASE, **extra}),
                                   "--out", self.p(tag))
                f_hf = self.ours("to-hf", "--in", self.p(tag), "--out", self.p(f"{tag}_hf"), after=f_init)
                logits = self.submit_logits(self.p(tag), tag, "scores" if kind == "scalar" else "logits",
                                            f_init)
                inits.append((tag, kind, f_init, f_hf, logits))
        model_bin, tok_bin = f"{stories_dir}/stories260K.bin", f"{stories_dir}/tok512.bin"
        stories = None
        if os.path.isfile(model_bin) and os.path.isfile(tok_bin):
            f_s = self.ours("from-llama2c", "--model", model_bin, "--tokenizer", tok_bin,
                            "--out", self.p("stories"))
            stories = (f_s, self.ours("to-hf", "--in", self.p("stories"), "--out", self.p("stories_hf"),
                                      after=f_s),
                       self.submit_logits(self.p("stories"), "stories260K", "logits", f_s))

        # 1. HF models -> from-hf -> our outputs vs HF's; to-hf -> bit-identical, HF reproduces ours
        # (from the same files of our logits: the checkpoint did not change).
        for name in names:
            kind, f_in, logits, greedy, f_out = plan[name]
            hf, rt = self.p(f"hf_{name}"), self.p(f"rt_{name}")
            if not self.done(f_in):
                continue
            self.check_logits(hf, logits, kind)
            for dev, (path, fut) in greedy.items():
                if self.done(fut):
                    self.check(f"{hf} greedy {path}", compare_greedy, hf, path)
            if not self.done(f_out):
                continue
            self.check(f"{rt} same weights", same_weights, hf, rt)
            self.check_logits(rt, logits, kind)
        if self.done(f_shard):
            shard = self.p("shard_qwen3")
            idx = f"{shard}/model.safetensors.index.json"
            if (self.check(f"{idx} exists", lambda: os.path.isfile(idx) or print(f"FAIL {idx} missing"))
                    and self.check(f"{shard} same weights", same_weights, self.p("hf_qwen3"), shard)):
                self.check_logits(shard, plan["qwen3"][2], "logits")
        if self.done(f_bf16):
            self.check(f"{self.p('bf16_llama3')} same weights (bf16)", same_weights,
                       self.p("hf_llama3_bias"), self.p("bf16_llama3"), True)

        # 2. our freshly initialised checkpoints, every family -> to-hf -> compare.
        for tag, kind, f_init, f_hf, logits in inits:
            if self.done(f_init) and self.done(f_hf):
                self.check_logits(self.p(f"{tag}_hf"), logits, "scores" if kind == "scalar" else "logits")

        # 3. stories260K (llama2.c import, q/k permutation) -> to-hf -> compare.
        if stories is None:
            print(f"NOTE: {stories_dir} not present on this machine; stories260K parity not run")
        elif self.done(stories[0]) and self.done(stories[1]):
            self.check_logits(self.p("stories_hf"), stories[2], "logits")
        self.pool.shutdown(wait=True)


def run_all(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="hf_parity.py all")
    ap.add_argument("bin_dir")
    ap.add_argument("tmp")
    ap.add_argument("tol", type=float)
    ap.add_argument("--devices", default="cpu", help="our side's devices, comma-separated")
    ap.add_argument("--stories", default=STORIES, help="folder with stories260K.bin and tok512.bin")
    # A run is ~0.5 s of libtorch start-up, part of it waiting: one more than the cores.
    ap.add_argument("--jobs", type=int, default=(os.cpu_count() or 1) + 1,
                    help="runs of rlhf_convert at a time")
    a = ap.parse_args(argv)
    if not os.access(os.path.join(a.bin_dir, "rlhf_convert"), os.X_OK):
        print(f"FAIL: {a.bin_dir}/rlhf_convert not found", file=sys.stderr)
        return 2
    devices = [d for d in a.devices.replace(" ", ",").split(",") if d]
    print(f"our devices: {' '.join(devices)}; transformers {transformers.__version__}, "
          f"torch {torch.__version__}, HF fp32 eager on cpu")
    s = Suite(a.bin_dir, a.tmp, a.tol, devices, max(1, a.jobs))
    s.run(a.stories)
    failed = [label for label, ok in s.checks if not ok]
    if failed:
        print(f"hf_parity: {len(failed)} of {len(s.checks)} check(s) FAILED (tol {a.tol:g}):")
        for label in failed:
            print(f"  {label}")
        return 1
    print(f"hf_parity: all {len(s.checks)} checks passed (tol {a.tol:g}; our devices: {' '.join(devices)})")
    return 0


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "all":
        return run_all(argv[1:])
    if cmd == "make" and len(argv) >= 2:
        return 0 if make(argv[1]) else 1
    if cmd == "names":
        print("\n".join(models()))
        return 0
    if cmd == "same-weights" and len(argv) >= 3:
        return 0 if same_weights(argv[1], argv[2], len(argv) > 3 and argv[3] == "bf16") else 1
    if cmd == "compare" and len(argv) >= 4:
        return 0 if compare(argv[1], argv[2], float(argv[3])) else 1
    if cmd == "compare-greedy" and len(argv) >= 3:
        return 0 if compare_greedy(argv[1], argv[2]) else 1
    if cmd == "compare-scores" and len(argv) >= 4:
        return 0 if compare_scores(argv[1], argv[2], float(argv[3])) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
