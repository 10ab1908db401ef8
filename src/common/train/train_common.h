// train_common.h — pieces every stage's training loop shares: resolving the model + tokenizer from
// the config (scratch or an init checkpoint), the training-checkpoint write/read (model.h5,
// optim.h5 with AdamW moments and per-rank RNG states, state.yaml), and the held-out LM loss.
// Contract: functions taking a Communicator are collective.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/data/batch.h"
#include "common/io/checkpoint.h"
#include "common/train/config.h"
#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/model.h"
#include "common/io/model_file.h"
#include "common/train/optimizer.h"
#include "common/tokenizer/tokenizer.h"
#include "common/model/lm_loss.h"

namespace rlhf {

struct ModelSetup {
  ModelConfig cfg;
  TokenizerInfo tok;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string init_path;  // model.h5 the weights come from ("" = scratch)
};

// init = "" -> cfg.model + cfg.tokenizer (vocab sizes must agree); otherwise the checkpoint's model
// config and tokenizer (the config's model.dropout and activation_checkpointing still apply).
ModelSetup resolve_model(const Config& cfg, const std::string& init);
// A stage's model set-up: resolve_model(cfg, cfg.init), errors about init naming the key.
ModelSetup resolve_init_model(const Config& cfg);
SpecialIds special_ids(const TokenizerInfo& t);

// `opt` with its adapter dropout off, for stages whose ratios or margins compare a training
// forward with a no-dropout one (PPO's ratio against the old log-probs, DPO's margin against the
// reference): dropout there would be noise inside the ratio. Logs once on root when it was > 0,
// naming the stage, the models and what the noise would enter (`inside`).
LoraOptions without_adapter_dropout(const LoraOptions& opt, const std::string& stage,
                                    const std::string& models, const std::string& inside, bool root);

// model.lora (lora.h): adapters on `m`, whose base weights were just loaded from `base` (as
// read_model_h5 returns it: a LoRA file counts as its merged weights; its path is recorded as the
// adapters' base). No-op when opt.rank is 0. Throws naming model.lora.rank when base is null (a
// model trained from scratch has no pretrained base to adapt). `what` names the model in errors.
void attach_configured_lora(torch::nn::Module& m, const LoraOptions& opt, const ModelFile* base,
                            const std::string& what);

// Chat templates travel with rows (docs/DATA.md). A dataset of sft / ranked / prompt rows must
// have been rendered with the chat template the model was trained with (tok.chat_template; then
// plain rows are refused too). A model with no template yet adopts the dataset's: tok records
// the template and its end-of-turn id (which joins tok.stops), and checkpoints written with tok
// carry them. Throws rlhf::Error naming the dataset, `model` (a checkpoint path; "" = "the
// model") and both templates. Pretraining streams are plain by nature: do not pass them.
void adopt_chat_template(TokenizerInfo& tok, const DatasetMeta& data, const std::string& model);

// Where a dataset meets the model (every stage, every dataset it reads): its ids must fit the
// model's vocabulary (a dataset's ids are only checked against its own vocab_size attribute when
// read), and sft / ranked / prompt rows must carry the model's chat template
// (adopt_chat_template). Throws rlhf::Error naming the dataset.
void accept_dataset(ModelSetup& ms, const DatasetMeta& data);
int64_t seq_len_limit(const Config& cfg, const ModelConfig& m);

// Runs load() and prefixes an rlhf::Error with the config key its input came from, so a bad
// input names both the file and the key: "data.eval: cannot open 'x.h5': ...".
template <class F>
auto from_key(const char* key, F&& load) -> decltype(load()) {
  try {
    return load();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", key, e.what()));
  }
}

// Model files of one checkpoint: file name -> (module, kind). E.g. {"model.h5", actor, "causal_lm"}.
struct CkptModel {
  std::string file;
  torch::nn::Module* module;
  std::string kind;
  nlohmann::json extra;
};
struct CkptOptim {
  std::string prefix;
  AdamW* opt;
};

// Collective: gathers every rank's RNG state (the CPU generator as rng/cpu, and when the models
// are on CUDA on every rank the device generator as rng/cuda, both [world, bytes] in optim.h5),
// rank 0 writes the checkpoint directory.
std::string save_training_checkpoint(CheckpointManager& mgr, Communicator& comm, int64_t step,
                                     const std::vector<CkptModel>& models,
                                     const std::vector<CkptOptim>& optims,
                                     const ModelConfig& mcfg, const TokenizerInfo& tok,
                                     nlohmann::json state, const std::string& config_text);
// Every rank reads: weights, optimizer moments, its own RNG states (CPU; CUDA when the models are
// on CUDA and the checkpoint has them — on CPU a checkpoint's CUDA states are skipped with a
// warning; a different rank count restarts the streams with a note). Returns state.yaml's content.
nlohmann::json load_training_checkpoint(const std::string& dir, Communicator& comm,
                                        const std::vector<CkptModel>& models,
                                        const std::vector<CkptOptim>& optims);

nlohmann::json cursor_json(const Cursor& c);
Cursor cursor_from_json(const nlohmann::json& j);

// The masked LM loss of a batch (moved to `dev`): trunk, then fused_lm_loss on the head weight
// (no [B, T, V] logits). Gradients flow when grad mode is on.
LmLoss batch_lm_loss(CausalLM& model, const SeqBatch& b, const torch::Device& dev);
// The trunk's hidden states of a batch, padded [B, T, C] or packed [1, T, C] (b.packed).
torch::Tensor batch_hidden(Transformer& trunk, const SeqBatch& b, const torch::Device& dev);

// Held-out LM loss over the first `max_rows` rows of an SFT dataset (sharded over ranks).
// Returns {loss, tokens}. Runs under NoGradGuard in eval mode.
std::pair<double, int64_t> eval_lm_loss(CausalLM& model, const SftData& data, const SpecialIds& ids,
                                        int64_t max_len, int64_t micro_batch, int64_t max_rows,
                                        Communicator& comm, const torch::Device& device);

// Held-out LM loss of a token stream: the first `windows` non-overlapping windows of seq_len tokens
// (the same every call; sharded over ranks; every token but each window's first is a target).
double eval_stream_loss(CausalLM& model, const PretrainData& data, int64_t seq_len, int64_t windows,
                        Communicator& comm, const torch::Device& dev);

double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace rlhf
