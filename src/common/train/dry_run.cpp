// dry_run.cpp — see dry_run.h.
#include "common/train/dry_run.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include <unistd.h>

#include <fmt/format.h>

#include "common/core/check.h"
#include "common/core/h5.h"
#include "common/io/model_file.h"
#include "common/model/lora.h"
#include "common/train/train_common.h"

namespace rlhf {

ModelConfig checkpoint_model_config(const std::string& ckpt, const char* key) {
  RLHF_CHECK(!ckpt.empty(), "--dry-run: {} is not set", key);
  return read_model_header(resolve_model_path(ckpt)).cfg;
}

namespace {

std::string gib(double bytes) { return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024)); }

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(s[i]);
  }
  return out;
}

// Activation bytes of one micro-batch forward+backward through a trainable model.
double activation_bytes(const ModelConfig& m, double rows, double T, double e) {
  const double per_layer_full = rows * T * (16.0 * m.d_model + 3.0 * m.d_ff) * e;
  if (m.activation_checkpointing)
    return m.n_layer * rows * T * m.d_model * e + per_layer_full;
  return m.n_layer * per_layer_full;
}

// A ranked stage's micro-batch counts groups (a prompt with its K ranked responses), and its
// forward holds every response of its groups (RM: the prompt once, each response against its
// cache; DPO: each response under the policy and the reference): micro × K rows. K = the largest
// group of data.train when that file can be read, else 2 (the fewest a group has).
int64_t rows_per_group(const Config& cfg) {
  int64_t k = 2;
  try {
    const std::vector<int64_t> go = H5File::open_read(cfg.data.train).read_vector<int64_t>("group_offsets");
    for (size_t g = 1; g < go.size(); ++g) k = std::max(k, go[g] - go[g - 1]);
  } catch (const std::exception&) {
    // not readable here (a dry run before the data exists): the least K
  }
  return k;
}

}  // namespace

StagePlan stage_plan(const Config& cfg) {
  RLHF_CHECK(cfg.stage != nullptr, "stage_plan: the config has no stage");
  return cfg.stage->plan ? cfg.stage->plan(cfg) : StagePlan{};
}

std::vector<StageModel> stage_models(const Config& cfg) {
  RLHF_CHECK(cfg.stage != nullptr && cfg.stage->models, "stage_models: the config's stage declares no models");
  ModelConfig base = cfg.model;
  if (!cfg.init.empty()) {
    base = checkpoint_model_config(cfg.init, "init");
    base.activation_checkpointing = cfg.model.activation_checkpointing;
  }
  std::vector<StageModel> out = cfg.stage->models(cfg, base);
  const StagePlan plan = stage_plan(cfg);
  for (auto& m : out) {
    m.lora = m.trainable && cfg.lora.enabled();
    m.shared = m.role == "reference" && cfg.lora.enabled();  // the base, adapters off (PPO, DPO)
    m.frozen_bf16 = plan.frozen_bf16 && (!m.trainable || m.lora);
    m.offloaded = plan.offload_frozen && !m.trainable && !m.shared;
  }
  return out;
}

ModelMemory model_memory(const StageModel& m, const Config& cfg, int world_size) {
  ModelMemory mm;
  mm.role = m.role;
  mm.params = m.cfg.parameter_count(m.scalar);
  if (m.trainable) {
    const int64_t head = m.scalar ? m.cfg.d_model + (m.role == "critic" ? 1 : 0) : 0;
    mm.trained = m.lora ? lora_parameter_count(m.cfg, cfg.lora) + head : mm.params;
  }
  // ZeRO (dist.zero_stage, train/zero.h) divides a trained model's state by the rank count:
  // moments from stage 1, gradients from 2, trained weights from 3. Frozen weights stay whole.
  const int64_t zero = cfg.dist.zero_stage;
  const double W = std::max(1, world_size);
  double frozen = 0;  // parameters without gradients or moments
  if (!m.trainable) frozen = m.shared ? 0.0 : static_cast<double>(mm.params);
  else if (m.lora) frozen = static_cast<double>(mm.params - (m.scalar ? m.cfg.d_model + 1 : 0));
  const double trained = static_cast<double>(mm.trained);
  mm.weights = (m.frozen_bf16 ? 2.0 : 4.0) * frozen + 4.0 * trained / (zero >= 3 ? W : 1.0);
  mm.grads = 4.0 * trained / (zero >= 2 ? W : 1.0);
  mm.optimizer = 8.0 * trained / (zero >= 1 ? W : 1.0);
  return mm;
}

MemoryEstimate estimate_memory(const Config& cfg, const std::vector<StageModel>& models, int world_size, bool cuda) {
  MemoryEstimate e;
  const double elt = cuda && cfg.train.precision == Precision::BF16 ? 2.0 : 4.0;
  const StagePlan plan = stage_plan(cfg);
  // Batch sizes count samples; each sample is plan.rows_per_sample rows (PPO: rollout rows).
  const int64_t n = std::max<int64_t>(1, plan.rows_per_sample);
  const int64_t per_rank = std::max<int64_t>(1, cfg.train.global_batch_size / world_size) * n;
  const int64_t share = plan.step_samples > 0 ? std::max<int64_t>(1, plan.step_samples / world_size) * n : per_rank;
  const double micro = static_cast<double>(cfg.train.micro_batch_size > 0 ? cfg.train.micro_batch_size : share) *
                       static_cast<double>(plan.ranked_groups ? rows_per_group(cfg) : 1);  // rows per forward
  const bool generates = plan.generated_tokens > 0;
  for (const auto& m : models) {
    ModelMemory mm = model_memory(m, cfg, world_size);
    (m.offloaded ? e.offloaded : e.weights) += mm.weights;
    e.grads += mm.grads;
    e.optimizer += mm.optimizer;
    e.models.push_back(std::move(mm));
  }
  const StageModel& first_model = models.front();
  const ModelConfig& first = first_model.cfg;
  const double T = generates ? std::min<double>(first.max_seq_len, seq_len_limit(cfg, first) +
                                                                       static_cast<double>(plan.generated_tokens))
                             : seq_len_limit(cfg, first);
  for (const auto& m : models)
    if (m.trainable) e.activations = std::max(e.activations, activation_bytes(m.cfg, micro, T, elt));
  int trained_models = 0;
  for (const auto& m : models) trained_models += m.trainable ? 1 : 0;
  if (trained_models > 1) e.activations *= 2;  // e.g. PPO's actor and critic updates can overlap
  e.logits = first_model.scalar ? 0.0 : micro * T * first.vocab_size * 12.0;  // a scalar head: no logits
  if (generates)
    e.kv_cache = 2.0 * first.n_layer * per_rank * T * first.n_kv_head * first.head_dim() * elt;
  return e;
}

void check_memory_fits(const Config& cfg, int world_size, int local_size, bool cuda) {
  const char* skip = std::getenv("RLHF_SKIP_MEMORY_CHECK");
  if (cuda || (skip != nullptr && std::string(skip) == "1")) return;
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  if (ram <= 0) return;
  const double per_rank = ram / std::max(1, local_size);
  const auto models = stage_models(cfg);
  const MemoryEstimate e = estimate_memory(cfg, models, world_size, false);
  const StagePlan plan = stage_plan(cfg);
  RLHF_CHECK(e.total() <= 4 * per_rank,
             "this run needs about {} per rank (weights {}, grads {}, AdamW {}, activations {}, "
             "logits {}{}), more than 4x the {} this machine has per rank: train.micro_batch_size "
             "= {} with sequences of up to {} tokens{} is far too large (--dry-run prints the "
             "estimate; RLHF_SKIP_MEMORY_CHECK=1 runs anyway)",
             gib(e.total()), gib(e.weights), gib(e.grads), gib(e.optimizer), gib(e.activations),
             gib(e.logits), e.kv_cache > 0 ? ", kv cache " + gib(e.kv_cache) : "", gib(per_rank),
             cfg.train.micro_batch_size, seq_len_limit(cfg, models.front().cfg),
             plan.generated_tokens > 0 ? fmt::format(" (+ {} {})", plan.generated_key, plan.generated_tokens) : "");
}

int dry_run(const Config& cfg, int world_size) {
  const std::string exe = stage_name(cfg) + "_train";
  std::cout << "# " << exe << " --dry-run: resolved config\n" << dump_config(cfg);
  const auto models = stage_models(cfg);
  const bool cuda = cfg.train.device == DeviceKind::CUDA;
  const MemoryEstimate e = estimate_memory(cfg, models, world_size, cuda);
  int64_t total = 0, trained = 0;
  std::cout << "# models (bytes per rank)\n";
  for (size_t i = 0; i < models.size(); ++i) {
    const StageModel& m = models[i];
    const ModelMemory& mm = e.models[i];
    total += m.shared ? 0 : mm.params;
    trained += mm.trained;
    std::string how = m.trainable ? (m.lora ? fmt::format("LoRA r={}: {} trained", cfg.lora.rank,
                                                          with_commas(mm.trained))
                                            : std::string("trained"))
                                  : (m.shared ? std::string("the actor's base, adapters off") : std::string("frozen"));
    if (m.frozen_bf16) how += ", frozen weights bf16";
    if (m.offloaded) how += ", offloaded to the CPU between scoring phases";
    std::cout << fmt::format("#   {:<12} {} {} (d_model {}, {} layers, {} heads / {} kv, head_dim "
                             "{}, d_ff {}, vocab {}): {} parameters ({}); weights {}, grads {}, "
                             "AdamW {}\n",
                             m.role, family_name(m.cfg.family), m.scalar ? "scalar" : "causal_lm",
                             m.cfg.d_model, m.cfg.n_layer, m.cfg.n_head, m.cfg.n_kv_head,
                             m.cfg.head_dim(), m.cfg.d_ff, m.cfg.vocab_size, with_commas(mm.params),
                             how, gib(mm.weights), gib(mm.grads), gib(mm.optimizer));
  }
  std::cout << fmt::format(
      "# parameters: {} in all, {} trained\n"
      "# peak memory estimate per rank ({} rank{}, {} {}, ZeRO stage {}): weights {} + grads {} + "
      "AdamW {} + max(activations {} + logits {}, kv cache {} + offloaded weights {}) = {}\n",
      with_commas(total), with_commas(trained), world_size, world_size > 1 ? "s" : "",
      cuda ? "cuda" : "cpu", kPrecisionNames.name(cfg.train.precision), cfg.dist.zero_stage, gib(e.weights),
      gib(e.grads), gib(e.optimizer), gib(e.activations), gib(e.logits), gib(e.kv_cache),
      gib(e.offloaded), gib(e.total()));
  return 0;
}

}  // namespace rlhf
