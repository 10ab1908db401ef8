// rlhf_convert — model format conversion, the commands callable from tests (single process;
// logs on stderr, nothing on stdout).
//   from-hf      --in HF_DIR --out CKPT [--tokenizer SPEC]
//                HF_DIR: config.json + model.safetensors (or model.safetensors.index.json shards).
//                Tokenizer: HF_DIR's vocab.json + merges.txt (GPT-2 BPE) when present, else SPEC.
//   to-hf        --in CKPT --out HF_DIR [--dtype fp32|bf16] [--max-shard-mb MB]
//                [--drop-score-bias]   config.json + model.safetensors (or shards + index) in the
//                checkpoint family's HF layout (io/hf_folder.h): causal_lm -> *ForCausalLM,
//                scalar (RM / critic) -> *ForSequenceClassification; vocab.json and merges.txt
//                copied when the checkpoint's tokenizer is GPT-2
//   merge-lora   --in CKPT --out DIR [--force]   a LoRA checkpoint (adapters + a reference to its
//                base, common/model/lora.h) -> DIR/model.h5 with W + (alpha/r)·B·A folded in: a
//                plain model any tool reads without the base. (to-hf merges the same way.)
//   from-llama2c --model FILE.bin --tokenizer TOK.bin --out CKPT
//   init         --family gpt2|llama --tokenizer SPEC --out CKPT [--config-json JSON|@FILE]
//                [--seed S] [--kind causal_lm|scalar] [--header-only]   a freshly initialised
//                model (tests, parity); --header-only: config + tokenizer, no weights (--dry-run)
//   logits       --in CKPT --out FILE.safetensors [--seed S --batch B --len T --device D]
//                parity aid: random tokens [B, T] (odd rows left-padded), writes tensors
//                "tokens", "mask" (as float32) and "logits" [B, T, V] of the model on them; a
//                scalar checkpoint writes "scores" [B] (score_last) and "score_bias" [1]
//                instead (its real tokens avoid the pad id, see hf_folder.h).
//   greedy       --in CKPT --out FILE.safetensors [--seed S --batch B --len T --new N --device D]
//                parity aid: the same prompts as logits, N greedy tokens (no EOS stop); writes
//                "tokens" [B, T + N] and "prompt_mask" [B, T] (float32).
// CKPT is a directory; the model goes to CKPT/model.h5 (io/model_file.h). Tokenizer files are copied
// into CKPT (CKPT/tokenizer/ for GPT-2, CKPT/tokenizer.bin for llama2c) so a checkpoint is
// self-contained; the recorded tokenizer spec points at the copy.
//
// Contract: single process; each function writes its output or throws rlhf::Error naming the file
// or option at fault; returns the process exit code (0).
#pragma once

#include <cstdint>
#include <string>

#include "common/io/hf_folder.h"

namespace rlhf {

// The commands that write a checkpoint refuse an `out` that already holds a model.h5 (its
// optimizer state and steps would no longer match) unless force (--force) is set.
int from_hf(const std::string& in, const std::string& out, const std::string& tok_opt, bool force = false);
// Refuses an --out that already holds config.json unless force (then its *.safetensors and shard
// index are removed first, so no stale weights remain beside the new ones).
int to_hf(const std::string& in, const std::string& out, const HfExportOptions& opt = {},
          bool force = false);
int from_llama2c(const std::string& model, const std::string& tok, const std::string& out,
                 bool force = false);
int merge_lora(const std::string& in, const std::string& out, bool force = false);
// header_only: the model's config and tokenizer without weights (no model is built), for
// `--dry-run` memory planning of sizes this machine cannot hold; tools that need weights refuse it.
int init_model(const std::string& family, const std::string& cfg_json, const std::string& tok_spec,
               uint64_t seed, const std::string& kind, const std::string& out, bool force = false,
               bool header_only = false);
int dump_logits(const std::string& in, const std::string& out, uint64_t seed, int64_t batch,
                int64_t len, const std::string& device);
int dump_greedy(const std::string& in, const std::string& out, uint64_t seed, int64_t batch,
                int64_t len, int64_t new_tokens, const std::string& device);

}  // namespace rlhf
