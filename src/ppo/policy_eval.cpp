#include "ppo/policy_eval.h"

#include <filesystem>

#include "common/core/rng.h"
#include "common/dist/dist.h"
#include "common/io/checkpoint.h"
#include "common/task/synth_task.h"
#include "common/train/config.h"
#include "ppo/ppo_config.h"
#include "common/train/train_common.h"
#include "ppo/rollout.h"

namespace rlhf {

nlohmann::json PolicyEvalResult::to_json(const std::string& p) const {
  nlohmann::json j = {{p + "prompts", prompts}, {p + "reward_mean", reward_mean}, {p + "reward_std", reward_std},
                      {p + "length_mean", length_mean}, {p + "eos_rate", eos_rate}};
  if (!std::isnan(kl_to_ref)) j[p + "kl_to_ref"] = kl_to_ref;
  if (!std::isnan(hidden_mean)) j[p + "hidden_score"] = hidden_mean;
  return j;
}

namespace {
}  // namespace

int64_t ppo_response_length(const std::string& ckpt) {
  const std::string state_path =
      (std::filesystem::path(resolve_model_path(ckpt)).parent_path() / "state.yaml").string();
  if (!std::filesystem::exists(state_path)) return 0;  // a bare model file
  const nlohmann::json st = read_state_yaml(state_path);
  if (!st.contains("kl_coef") || !st.contains("config")) return 0;  // not a PPO checkpoint
  try {
    return ppo_section(parse_config(ppo_stage(), st.at("config").get<std::string>(), state_path)).max_new_tokens;
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: cannot read ppo.max_new_tokens from the stored config ({}); pass "
                            "--max-new-tokens N", state_path, e.what()));
  }
}

namespace {

struct Sample {
  std::vector<double> reward, hidden, kl, length;
  std::vector<bool> eos;
  Rollout ro;                // collective rewards: what they read of it, on the CPU, until scored
  std::vector<int64_t> idx;  // its prompt rows
};

// The part of a rollout that rewards decoding text read (reward/rules.h reward_rows,
// reward/remote.h rollout_queries), on the CPU.
Rollout scoring_copy(const Rollout& r) {
  Rollout k;
  k.P = r.P;
  k.N = r.N;
  k.tokens = r.tokens.to(torch::kCPU);
  k.attention_mask = r.attention_mask.to(torch::kCPU);
  k.response_mask = r.response_mask.to(torch::kCPU);
  k.has_eos = r.has_eos.to(torch::kCPU);
  return k;
}

void set_rewards(Sample& s, const torch::Tensor& scores) {
  const torch::Tensor c = scores.to(torch::kCPU, torch::kDouble).contiguous();
  s.reward.assign(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// One batch of prompts -> per-row statistics for `policy`. A local reward (rm, rule) scores it
// here; a collective one later, once for all batches (score_samples).
Sample sample_batch(CausalLM& policy, CausalLM* reference, const RewardSource& reward, const PromptData& prompts,
                    const std::vector<int64_t>& idx, const Tokenizer& tok, const SpecialIds& ids,
                    int64_t max_len, const SamplingConfig& sc, uint64_t seed, bool synth,
                    Communicator& comm, const torch::Device& dev) {
  torch::NoGradGuard ng;
  auto [pt, pm] = prompt_batch(prompts, idx, ids, max_len - sc.max_new_tokens);
  std::vector<uint64_t> row_seeds;  // one stream per row: the rollout engine's draws
  for (size_t b = 0; b < idx.size(); ++b) row_seeds.push_back(mix_seed(seed, static_cast<int64_t>(b), 0, 6));
  Rollout r = generate_rollout(policy, pt.to(dev), pm.to(dev), sc, row_seeds);
  Sample s;
  auto len = r.response_mask.sum(1).to(torch::kCPU);
  torch::Tensor kl;
  if (reference) {
    // KL of the distribution sampled from: logits / temperature (1 for greedy decoding).
    const double temp = sc.temperature > 0 ? sc.temperature : 1.0;
    auto lp = response_logprobs(policy, r, temp);
    torch::Tensor rp;
    {
      AdaptersOff base_only(**reference);  // LoRA: the reference is the actor's base
      rp = response_logprobs(*reference, r, temp);
    }
    kl = (lp - rp).masked_fill(r.response_mask.logical_not(), 0).sum(1).to(torch::kCPU);
  }
  std::vector<std::string> resp, pr;
  if (synth) {
    resp = decode_responses(r, tok);
    pr = decode_prompts(prompts, idx, tok);
  }
  auto eos = r.has_eos.to(torch::kCPU);
  for (int64_t b = 0; b < r.batch(); ++b) {
    s.length.push_back(len[b].item<double>());
    s.eos.push_back(eos[b].item<bool>());
    if (reference) s.kl.push_back(kl[b].item<double>());
    if (synth) s.hidden.push_back(synth_hidden_score(pr[b], resp[b], s.eos.back()));
  }
  s.idx = idx;
  if (reward.collective())
    s.ro = scoring_copy(r);
  else
    set_rewards(s, reward.score(r, prompts, idx, comm));
  return s;
}

// A collective reward: fills the rewards of this rank's samples (possibly none) with its one
// call, and drops their rollouts. Local rewards have scored already.
void score_samples(std::vector<Sample>& ss, const RewardSource& reward, const PromptData& prompts,
                   Communicator& comm) {
  if (!reward.collective()) return;
  std::vector<RolloutBatch> batches;
  for (const Sample& s : ss) batches.push_back({&s.ro, &s.idx});
  const std::vector<torch::Tensor> scores = reward.score(batches, prompts, comm);
  for (size_t i = 0; i < ss.size(); ++i) {
    set_rewards(ss[i], scores[i]);
    ss[i].ro = Rollout{};
  }
}

PolicyEvalResult summarise(const std::vector<Sample>& ss, bool have_ref, bool synth, Communicator& comm) {
  double n = 0, r = 0, r2 = 0, kl = 0, len = 0, eos = 0, hid = 0;
  for (const auto& s : ss) {
    for (size_t i = 0; i < s.reward.size(); ++i) {
      n += 1;
      r += s.reward[i];
      r2 += s.reward[i] * s.reward[i];
      len += s.length[i];
      eos += s.eos[i];
      if (have_ref) kl += s.kl[i];
      if (synth) hid += s.hidden[i];
    }
  }
  auto g = [&](double v) { return comm.all_reduce_scalar(v); };
  PolicyEvalResult out;
  n = g(n);
  const double N = std::max(1.0, n);
  out.prompts = static_cast<int64_t>(n);
  out.reward_mean = g(r) / N;
  out.reward_std = std::sqrt(std::max(0.0, g(r2) / N - out.reward_mean * out.reward_mean));
  out.length_mean = g(len) / N;
  out.eos_rate = g(eos) / N;
  const double klg = g(kl), hidg = g(hid);
  if (have_ref) out.kl_to_ref = klg / N;
  if (synth) out.hidden_mean = hidg / N;
  return out;
}

std::vector<std::vector<int64_t>> shard_batches(int64_t n, int64_t micro, Communicator& comm) {
  std::vector<std::vector<int64_t>> out;
  for (auto [begin, end] : rank_chunks(n, micro, comm)) {
    std::vector<int64_t> idx;
    for (int64_t i = begin; i < end; ++i) idx.push_back(i);
    out.push_back(idx);
  }
  return out;
}

// The tokenizer's ids; extra stops already in sc (e.g. ppo.stop_token) are kept.
SamplingConfig with_ids(SamplingConfig sc, const SpecialIds& ids) {
  const std::vector<int64_t> given = sc.extra_stop_ids;
  sc.eos_id = ids.eos;
  sc.extra_stop_ids = ids.stops;
  for (int64_t s : given) add_stop_id(sc.extra_stop_ids, sc.eos_id, s);
  sc.pad_id = ids.pad;
  return sc;
}

}  // namespace

PolicyEvalResult evaluate_policy(CausalLM& policy, CausalLM* reference, const RewardSource& reward,
                                 const PromptData& prompts, const Tokenizer& tok, int64_t max_len,
                                 const PolicyEvalOptions& opt, Communicator& comm, const torch::Device& dev) {
  const SpecialIds ids = for_rows(special_ids(TokenizerInfo::of(tok)), prompts.meta);
  const bool synth = prompts.meta.source == "synth";
  const int64_t n = opt.max_prompts > 0 ? std::min(opt.max_prompts, prompts.size()) : prompts.size();
  const SamplingConfig sc = with_ids(opt.sampling, ids);
  std::vector<Sample> ss;
  for (const auto& idx : shard_batches(n, opt.micro_batch, comm))
    ss.push_back(sample_batch(policy, reference, reward, prompts, idx, tok, ids, max_len, sc,
                              opt.seed * 7919 + static_cast<uint64_t>(idx.front()), synth, comm, dev));
  score_samples(ss, reward, prompts, comm);
  return summarise(ss, reference != nullptr, synth, comm);
}

CompareResult compare_policies(CausalLM& a, CausalLM& b, const RewardSource& reward, const PromptData& prompts,
                               const Tokenizer& tok, int64_t max_len, const PolicyEvalOptions& opt,
                               Communicator& comm, const torch::Device& dev) {
  const SpecialIds ids = for_rows(special_ids(TokenizerInfo::of(tok)), prompts.meta);
  const bool synth = prompts.meta.source == "synth";
  const int64_t n = opt.max_prompts > 0 ? std::min(opt.max_prompts, prompts.size()) : prompts.size();
  const SamplingConfig sc = with_ids(opt.sampling, ids);
  std::vector<Sample> sa, sb;
  for (const auto& idx : shard_batches(n, opt.micro_batch, comm)) {
    const uint64_t seed = opt.seed * 7919 + static_cast<uint64_t>(idx.front());  // same for A and B
    sa.push_back(sample_batch(a, nullptr, reward, prompts, idx, tok, ids, max_len, sc, seed, synth, comm, dev));
    sb.push_back(sample_batch(b, nullptr, reward, prompts, idx, tok, ids, max_len, sc, seed, synth, comm, dev));
  }
  score_samples(sa, reward, prompts, comm);
  score_samples(sb, reward, prompts, comm);
  double wins = 0, wins_h = 0, count = 0;
  for (size_t k = 0; k < sa.size(); ++k) {
    for (size_t i = 0; i < sa[k].reward.size(); ++i) {
      const double ra = sa[k].reward[i], rb = sb[k].reward[i];
      wins += ra > rb ? 1.0 : (ra == rb ? 0.5 : 0.0);
      if (synth) {
        const double ha = sa[k].hidden[i], hb = sb[k].hidden[i];
        wins_h += ha > hb ? 1.0 : (ha == hb ? 0.5 : 0.0);
      }
      count += 1;
    }
  }
  CompareResult c;
  c.a = summarise(sa, false, synth, comm);
  c.b = summarise(sb, false, synth, comm);
  count = comm.all_reduce_scalar(count);
  c.prompts = static_cast<int64_t>(count);
  c.win_rate_rm = comm.all_reduce_scalar(wins) / std::max(1.0, count);
  const double wh = comm.all_reduce_scalar(wins_h);
  if (synth) c.win_rate_hidden = wh / std::max(1.0, count);
  return c;
}

}  // namespace rlhf
