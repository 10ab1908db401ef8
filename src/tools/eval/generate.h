// generate.h — `rlhf_eval generate`: batch generation from a causal-LM checkpoint to JSONL, for
// external judges and offline evaluation.
//
//   rlhf_eval generate --checkpoint CKPT --prompts FILE(.jsonl|.h5) --out FILE.jsonl [--n N]
//                      [--max-new-tokens N --temperature T --top-k K --top-p P --seed S]
//                      [--chat [--system TEXT] [--chat-template NAME|FILE]] [--micro-batch B]
//                      [--max-prompts M] [--device cpu|cuda]
// Prompts: a prompts dataset from rlhf_prep (.h5: token rows, decoded for the "prompt" field; chat
// rows were rendered when prepared) or JSONL, one prompt per line: a JSON string or an object
// with "prompt" (text; with --chat the user message rendered by the checkpoint's chat template).
// Each prompt is sampled --n times; sample k of prompt p is item i = p·n + k, and its tokens come
// from a generator seeded by (seed, i), so the output does not depend on the batch size or on the
// number of ranks. Prompts longer than the context minus max-new-tokens lose their start.
// Data-parallel: under mpirun, items are cut into --micro-batch chunks dealt to ranks
// (rank_chunks); rank 0 gathers them and writes --out (atomically) in item order, one JSON
// object per line: {"index", "prompt_index", "sample", "prompt", "response", "tokens" (the
// response's ids, stop token excluded), "finish_reason" ("stop": EOS or a stop id; "length"),
// "prompt_truncated"}; decoded text that is not valid UTF-8 gets U+FFFD in place of the bad
// bytes ("tokens" stays exact). The last stdout line is a JSON summary (rank 0).
// Contract: collective; the checkpoint and prompt file are read by every rank.
#pragma once
#include <CLI/CLI.hpp>

namespace rlhf {

// Adds the `generate` subcommand; its callback stores the exit code in *exit_code.
void register_eval_generate(CLI::App& app, int* exit_code);

}  // namespace rlhf
