// ppo_setup.cpp — see ppo_setup.h.
#include "ppo/ppo_setup.h"

#include "common/io/model_file.h"
#include "common/train/log.h"
#include "common/train/optimizer.h"
#include "common/train/run.h"
#include "ppo/critic_free.h"
#include "ppo/frozen.h"

namespace rlhf {

namespace {

void freeze(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.set_requires_grad(false);
  m.eval();
}

// The frozen reward model of ppo.reward_model (kind scalar, the policy's tokenizer and template).
ScalarModel load_reward_model(const PpoSection& pc, const ModelSetup& ms, ModelFile& rm_file, bool root) {
  RLHF_CHECK(!pc.reward_model.empty(), "ppo.reward_model is not set: give the RM checkpoint "
             "(or ppo.reward: rule / command)");
  const std::string rm_path = from_key("ppo.reward_model", [&] { return resolve_model_path(pc.reward_model); });
  rm_file = from_key("ppo.reward_model", [&] { return read_model_h5(rm_path); });
  RLHF_CHECK(rm_file.kind == "scalar", "{}: ppo.reward_model must be a reward model (kind scalar), "
             "found '{}'", rm_path, rm_file.kind);
  RLHF_CHECK(rm_file.tok.identity == ms.tok.identity, "reward model tokenizer '{}' ({}) differs "
             "from the policy's '{}'", rm_file.tok.identity, rm_path, ms.tok.identity);
  RLHF_CHECK(rm_file.tok.chat_template == ms.tok.chat_template,
             "{}: the reward model was trained with chat template '{}' but the policy and its "
             "prompts use '{}'", rm_path, rm_file.tok.chat_template.empty() ? "(none: plain rows)"
             : rm_file.tok.chat_template_name, ms.tok.chat_template.empty() ? "(none: plain rows)"
             : ms.tok.chat_template_name);
  ScalarModel rm(rm_file.cfg);
  load_parameters(*rm, rm_file);
  if (root && !rm_file.extra.value("bias_fitted", false))
    log_warn("# warning: {} has no fitted bias (rm_train without data.bias_data)", rm_path);
  return rm;
}

// The critic from ppo.critic_init (default: the reward model's file rm_file), trunk AND score head
// (the RM's head and fitted bias: its first values are the RM's scores). LoRA adapters from
// `lora` (dropout already off).
ScalarModel load_critic(const Config& cfg, const LoraOptions& lora, const ModelFile& rm_file) {
  const PpoSection& pc = ppo_section(cfg);
  ModelFile critic_file = pc.critic_init.empty() ? rm_file : from_key("ppo.critic_init", [&] {
    return read_model_h5(resolve_model_path(pc.critic_init));
  });
  ModelConfig critic_cfg = critic_file.cfg;
  critic_cfg.dropout = 0.0;
  ScalarModel critic(critic_cfg);
  load_parameters(*critic, critic_file, {"score.weight", "score.bias"}, true);
  attach_configured_lora(*critic, lora, &critic_file, "the critic");
  return critic;
}

}  // namespace

PpoData load_ppo_data(const Config& cfg, const ModelSetup& ms) {
  const PpoSection& pc = ppo_section(cfg);
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a prompts dataset from rlhf_prep");
  PpoData d;
  d.prompts = from_key("data.train", [&] { return PromptData::load(cfg.data.train, ms.tok.identity); });
  if (!pc.pretrain.empty())
    d.ptx = from_key("data.pretrain", [&] { return PretrainData::load(pc.pretrain, ms.tok.identity); });
  if (!pc.pretrain_eval.empty())
    d.ptx_eval = from_key("data.pretrain_eval",
                          [&] { return PretrainData::load(pc.pretrain_eval, ms.tok.identity); });
  if (!cfg.data.eval.empty())
    d.eval = from_key("data.eval", [&] { return PromptData::load(cfg.data.eval, ms.tok.identity); });
  if (pc.reward == RewardKind::Rule)
    for (const auto& [key, p] : {std::pair<const char*, const PromptData*>{"data.train", &d.prompts},
                                 {"data.eval", &d.eval}})
      RLHF_CHECK(pc.reward_rule != "synth_hidden" || p->size() == 0 || p->meta.source == "synth",
                 "ppo.reward_rule: synth_hidden scores the embedded task's prompts, but {} comes from "
                 "'{}'", key, p->meta.source);
  // The held-out prompts are framed (and their rewards' queries: reward/source.h) as data.train's.
  RLHF_CHECK(d.eval.size() == 0 || d.eval.meta.chat() == d.prompts.meta.chat(),
             "data.eval {}: its prompts are {} rows but data.train's are {} rows; the held-out prompts "
             "must be of the training prompts' kind", d.eval.meta.path,
             d.eval.meta.chat() ? "chat" : "plain", d.prompts.meta.chat() ? "chat" : "plain");
  d.max_len = seq_len_limit(cfg, ms.cfg);
  d.max_prompt = d.max_len - pc.max_new_tokens;
  RLHF_CHECK(d.max_prompt >= 2, "ppo.max_new_tokens = {} leaves no room for a prompt in {} tokens",
             pc.max_new_tokens, d.max_len);
  return d;
}

// The four models: actor and reference from SFT, the reward model frozen (with its fitted bias),
// the critic from ppo.critic_init (default: the RM, its head included). No dropout of any kind:
// model.dropout is off (ppo_model_setup) and so is model.lora.dropout (logged once).
PpoModels load_ppo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root) {
  const PpoSection& pc = ppo_section(cfg);
  const LoraOptions lora_opt = without_adapter_dropout(cfg.lora, "ppo", "actor and critic", "PPO ratio", root);
  torch::manual_seed(cfg.run.seed);
  PpoModels n;
  ModelFile sft_file = read_model_h5(ms.init_path);
  n.actor = CausalLM(ms.cfg);
  load_parameters(*n.actor, sft_file);
  // With LoRA the reference policy is the actor's frozen base (adapters off, lora.h): one copy of
  // the base weights serves both.
  if (cfg.lora.enabled()) {
    attach_configured_lora(*n.actor, lora_opt, &sft_file, "the actor");
    n.reference = n.actor;
    if (root) log_info("# ppo: LoRA actor and critic; reference policy = the actor's base (adapters off)");
  } else {
    n.reference = CausalLM(ms.cfg);
    load_parameters(*n.reference, sft_file);
  }
  sft_file.tensors.clear();
  ModelFile rm_file;
  if (pc.reward == RewardKind::Rm) n.reward = load_reward_model(pc, ms, rm_file, root);  // else a rule
  if (uses_critic(pc.advantage)) n.critic = load_critic(cfg, lora_opt, rm_file);  // else critic-free
  const bool lora = cfg.lora.enabled();
  torch::nn::Module no_reward;
  const int64_t cast = apply_frozen_dtype(cfg, dev, n.reward.is_empty() ? no_reward : *n.reward,
                                          lora ? nullptr : n.reference.get(),
                                          lora ? n.lora_models() : std::vector<torch::nn::Module*>{});
  if (root && cast > 0) log_info("# ppo: {} frozen parameters kept in bf16 (ppo.frozen_dtype)", cast);
  n.actor->to(dev);
  if (!n.critic.is_empty()) n.critic->to(dev);
  for (torch::nn::Module* m : n.frozen())  // ppo.offload_frozen: on the CPU until scoring
    if (!pc.offload_frozen) m->to(dev);
  if (!lora) freeze(*n.reference);
  if (!n.reward.is_empty()) freeze(*n.reward);
  return n;
}

SpecialIds ppo_special_ids(const Config& cfg, const ModelSetup& ms, const DatasetMeta& prompts) {
  const PpoSection& pc = ppo_section(cfg);
  SpecialIds ids = for_rows(special_ids(ms.tok), prompts);
  if (!pc.stop_token.empty()) {
    const int32_t s = ms.tokenizer->token_id(pc.stop_token);
    RLHF_CHECK(s >= 0, "ppo.stop_token '{}' is not a token of the tokenizer {}", pc.stop_token, ms.tok.spec);
    add_stop_id(ids.stops, ids.eos, s);
  }
  return ids;
}

// The SFT checkpoint's model set-up for PPO: sampler checked, dropout off. No dropout in PPO:
// old log-probs and values are computed without it, so dropout in the update would make the
// first ratio differ from 1 by noise that clipping then acts on.
ModelSetup ppo_model_setup(const Config& cfg, bool root) {
  RLHF_CHECK(!cfg.init.empty(), "init is not set: PPO starts from the SFT checkpoint (init: runs/x/sft)");
  ModelSetup ms = resolve_init_model(cfg);
  const PpoSection& pc = ppo_section(cfg);
  check_ppo_sampling(pc, ms.cfg.vocab_size);
  if (ms.cfg.dropout > 0 && root)
    log_info("# ppo: model.dropout = {} overridden to 0 for actor and critic (dropout "
             "noise would enter the PPO ratio)", ms.cfg.dropout);
  ms.cfg.dropout = 0.0;
  if (root && pc.kl_in_loss && pc.kl_estimator == KlEstimator::K3)
    log_warn("# warning: ppo.kl_estimator: k3 with ppo.kl_in_loss: k3's expected gradient is the "
             "FORWARD KL's, grad KL(pi_ref || pi) (mass-covering), not the reverse KL the reward "
             "penalty estimates; k2 (the default) follows grad KL(pi || pi_ref) exactly (ppo/kl_loss.h)");
  return ms;
}


}  // namespace rlhf
