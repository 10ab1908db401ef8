// stage.h — `rlhf_eval` subcommands for trained checkpoints. Each prints a JSON object on the
// last stdout line (logs go to stderr), for scripts:
//   ppl     --checkpoint CKPT --data SFT.h5                      loss, perplexity, tokens
//   rm-acc  --checkpoint RM --data RANKED.h5                     pairwise accuracy, pairs, margin
//   reward  --policy P --reward-model RM [--reference REF] --prompts PROMPTS.h5
//           mean reward, KL to reference, length (+ hidden score on the embedded task)
//   compare --a A --b B --reward-model RM --prompts PROMPTS.h5   win rate of A over B
//   report  --run-dir RUN --data-dir DATA                        the pipeline's eval.json
// Contract: callable on any number of MPI ranks (collective); rank 0 prints.
#pragma once
#include <CLI/CLI.hpp>

namespace rlhf {

// Adds the subcommands above to `app`; their callbacks store the process exit code in *exit_code.
void register_stage_eval_commands(CLI::App& app, int* exit_code);

}  // namespace rlhf
