// sample.h — `rlhf_eval sample`: generate text from a causal-LM checkpoint.
//
//   rlhf_eval sample --checkpoint CKPT --prompt TEXT --max-new-tokens N --temperature T
//                    [--top-k K --top-p P --seed S --tokenizer SPEC --device cpu|cuda]
// Loads model.h5 (a checkpoint dir, run dir or model.h5 path) and the tokenizer named by its
// tokenizer spec (or --tokenizer, which must have the same identity). The prompt is encoded
// without special tokens; BOS is prepended when the tokenizer has a BOS distinct from its EOS
// (byte, llama2c), and for tokenizers whose BOS == EOS (gpt2) only when the prompt is empty
// (unconditional generation starts from <|endoftext|>). Generation stops at the tokenizer's EOS.
// --max-new-tokens defaults to the length a PPO checkpoint was trained with (its state.yaml's
// config), else 64.
// stdout: the decoded text of prompt + continuation (like llama2.c's run; special tokens
// dropped; llama2c pieces after BOS lose their leading space), then a newline. Logs on stderr.
// --chat [--system TEXT] [--chat-template auto|NAME|FILE.jinja]: the prompt is one user message
// (after an optional system message) rendered with the generation prompt by the checkpoint's
// chat template (the one it was trained with), else by --chat-template (default auto: the
// tokenizer's own); nothing else is added (the template writes BOS). Generation also stops at
// the template's end of turn; stdout is the assistant's reply only.
// Single process (rank 0 prints; other ranks do the same work silently).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/data/batch.h"
#include "common/io/model_file.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

class ChatTemplate;
class ChatEncoder;

// A causal-LM checkpoint ready to generate from (shared by `sample` and `generate`): the model on
// its device in eval mode, its tokenizer (or `tokenizer`, same identity), the stop ids (EOS, the
// checkpoint's stops, with chat the template's end of turn), and how a text prompt becomes ids.
struct LoadedPolicy {
  LoadedPolicy(const std::string& checkpoint, const std::string& tokenizer, const std::string& device,
               bool chat, const std::string& chat_template);
  ~LoadedPolicy();
  // Plain: the text's ids after BOS (when the tokenizer's BOS differs from its EOS, or the text is
  // empty); chat: [system message +] one user message rendered with the generation prompt.
  std::vector<int32_t> encode(const std::string& prompt, const std::string& system = "") const;

  std::string path;  // model.h5
  ModelFile file;
  std::unique_ptr<Tokenizer> tok;
  torch::Device dev = torch::kCPU;
  CausalLM model{nullptr};
  SpecialIds sids;
  std::unique_ptr<ChatTemplate> tpl;
  std::unique_ptr<ChatEncoder> encoder;  // set with chat
};

constexpr int64_t kSampleDefaultLength = 64;

struct SampleOptions {
  std::string checkpoint, prompt, tokenizer, device;
  bool chat = false;
  std::string chat_template, system;
  // 0: the ppo.max_new_tokens of a PPO checkpoint (ppo_response_length), else kSampleDefaultLength.
  int64_t max_new_tokens = 0, top_k = 0;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
};

// The generated text (prompt + continuation; with chat the reply), as printed without the final
// newline.
std::string sample_text(const SampleOptions& o);
int run_eval_sample(const SampleOptions& o);
// The sampling flags of rlhf_eval's generating commands (sample, reward, compare, report), with
// their bounds: --max-new-tokens (0 = the PPO checkpoint's length, else default_length),
// --temperature, --top-k, --top-p, --seed.
void add_sampling_flags(CLI::App* c, int64_t& max_new_tokens, double& temperature, int64_t& top_k,
                        double& top_p, uint64_t& seed, int64_t default_length);
// Adds the `sample` subcommand; its callback stores the exit code in *exit_code.
void register_eval_sample(CLI::App& app, int* exit_code);

}  // namespace rlhf
