// ppo_step.cpp — see ppo_step.h.
#include "ppo/ppo_step.h"

#include <cmath>

#include "common/core/rng.h"
#include "common/model/lm_loss.h"
#include "common/train/train_common.h"

namespace rlhf {

void make_experience(PpoModels& m, Rollout& ro, const ExperienceOptions& opt, Communicator& comm) {
  torch::NoGradGuard ng;
  EvalMode actor_eval(*m.actor), critic_eval(*m.critic);
  const torch::Tensor off = ro.response_mask.logical_not();                             // [B, N]
  ro.raw_score = score_rollout(m.reward, ro);                                            // [B]
  ro.score = ro.raw_score - opt.no_eos_penalty * ro.has_eos.logical_not().to(torch::kFloat);
  if (opt.score_clip > 0) ro.score = ro.score.clamp(-opt.score_clip, opt.score_clip);
  ro.old_logp = response_logprobs(m.actor, ro, opt.temperature).masked_fill(off, 0);     // [B, N]
  ro.ref_logp = response_logprobs(m.reference, ro, opt.temperature).masked_fill(off, 0); // [B, N]
  ro.old_values = response_values(m.critic, ro).masked_fill(off, 0);                     // [B, N]
  ro.kl = kl_penalty(ro.old_logp, ro.ref_logp, opt.estimator).masked_fill(off, 0);       // [B, N]
  ro.rewards = compute_rewards(ro.kl, ro.score, ro.response_mask, opt.kl_coef);          // [B, N]
  GaeResult g = gae(ro.old_values, ro.rewards, ro.response_mask, opt.gamma, opt.gae_lambda);
  ro.returns = g.returns;                                                                // [B, N]
  // Whiten advantages with statistics over the GLOBAL batch (all ranks).
  MaskedStats st = masked_stats(g.advantages, ro.response_mask);
  MaskedStats glob{comm.all_reduce_scalar(st.sum), comm.all_reduce_scalar(st.sum_sq),
                   comm.all_reduce_scalar(st.count)};
  ro.advantages = masked_whiten_with(g.advantages, ro.response_mask, glob.mean(), glob.var());
}

namespace {

// The order in which an epoch visits this rank's rows: a seeded permutation per (iteration,
// epoch), platform-independent, so a resumed run repeats it exactly.
torch::Tensor epoch_order(int64_t rows, uint64_t seed, int64_t epoch, const torch::Device& dev) {
  const auto p = seeded_permutation(rows, seed ^ (0xA0761D6478BD642FULL * static_cast<uint64_t>(epoch + 1)));
  return torch::tensor(p, torch::kLong).to(dev);
}

// γ · the LM loss of `rows` pretraining windows, each token weighted 1 / (this rank's ptx tokens
// per minibatch), so the minibatch's ptx term is the token mean whatever the micro-batching.
torch::Tensor ptx_term(CausalLM& actor, const UpdateOptions& opt, int64_t rows, SplitMix64& rng,
                       UpdateStats& st, const torch::Device& dev) {
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < rows; ++i) starts.push_back(rng.uniform(opt.ptx->size() - opt.ptx_seq_len));
  SeqBatch pb = build_stream_batch(opt.ptx->tokens, starts, opt.ptx_seq_len);
  LmLoss lm = batch_lm_loss(actor, pb, dev);
  st.ptx_nll += lm.sum_nll.item<double>();
  st.ptx_tokens += static_cast<double>(lm.tokens);
  const double tokens = static_cast<double>(opt.ptx_rows * (opt.ptx_seq_len - 1));
  return opt.ptx_coef * lm.sum_nll / tokens;
}

}  // namespace

UpdateStats ppo_update(PpoModels& m, AdamW& actor_opt, AdamW& critic_opt, const Rollout& ro,
                       const UpdateOptions& opt, Communicator& comm, const torch::Device& dev) {
  RLHF_CHECK(opt.minibatch_rows > 0 && ro.batch() % opt.minibatch_rows == 0 && opt.micro_rows > 0 &&
                 opt.minibatch_rows % opt.micro_rows == 0,
             "ppo_update: {} rows do not split into minibatches of {} and micro-batches of {}",
             ro.batch(), opt.minibatch_rows, opt.micro_rows);
  m.actor->train();
  m.critic->train();
  const int64_t accum = opt.minibatch_rows / opt.micro_rows;
  const bool ptx = opt.ptx != nullptr && opt.ptx_coef > 0 && opt.ptx_rows > 0;
  SplitMix64 ptx_rng(opt.ptx_seed);
  UpdateStats st;
  for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
    const torch::Tensor order = epoch_order(ro.batch(), opt.shuffle_seed, epoch, ro.tokens.device());
    for (int64_t mb0 = 0; mb0 < ro.batch(); mb0 += opt.minibatch_rows) {
      bool finite = true;
      for (int64_t a = 0; a < accum; ++a) {
        const Rollout mb = ro.rows(order.narrow(0, mb0 + a * opt.micro_rows, opt.micro_rows));
        torch::Tensor entropy;
        auto logp = response_logprobs(m.actor, mb, opt.temperature, &entropy);             // [b, N]
        PolicyLoss pl = policy_loss(logp, mb.old_logp, mb.advantages, mb.response_mask, opt.clip_eps);
        auto values = response_values(m.critic, mb);                                      // [b, N]
        ValueLoss vl = value_loss(values, mb.old_values, mb.returns, mb.response_mask, opt.value_clip);
        torch::Tensor loss = (pl.loss + opt.vf_coef * vl.loss) / static_cast<double>(accum);
        // This rank's ptx rows of the minibatch, spread over the micro-batches exactly (the
        // first ptx_rows % accum take one more).
        const int64_t ptx_rows = ptx ? opt.ptx_rows / accum + (a < opt.ptx_rows % accum ? 1 : 0) : 0;
        if (ptx_rows > 0) loss = loss + ptx_term(m.actor, opt, ptx_rows, ptx_rng, st, dev);
        loss.backward();
        finite = finite && std::isfinite(loss.item<double>());
        st.loss += (pl.loss + opt.vf_coef * vl.loss).item<double>();
        st.policy_loss += pl.loss.item<double>();
        st.value_loss += vl.loss.item<double>();
        st.clip_frac += pl.clip_frac.item<double>();
        st.value_clip_frac += vl.clip_frac.item<double>();
        st.approx_kl += pl.approx_kl.item<double>();
        st.entropy += masked_mean(entropy.detach(), mb.response_mask).item<double>();
        ++st.micro_batches;
      }
      StepResult ra = optimizer_step(actor_opt, comm, opt.lr, opt.grad_clip, opt.bucket_mb, finite);
      StepResult rc = optimizer_step(critic_opt, comm, opt.critic_lr, opt.grad_clip, opt.bucket_mb, finite);
      st.skipped += ra.skipped || rc.skipped;
      st.grad_norm = ra.grad_norm;
      st.critic_grad_norm = rc.grad_norm;
      ++st.optimizer_steps;
    }
  }
  return st;
}

nlohmann::json ppo_metrics(const Rollout& ro, const UpdateStats& st, const IterationTimes& t,
                           int64_t global_batch, double beta, double lr, Communicator& comm) {
  auto gsum = [&](double v) { return comm.all_reduce_scalar(v); };
  auto gmean = [&](double v) { return comm.all_reduce_scalar(v, ReduceOp::Avg); };
  const double B = static_cast<double>(global_batch);
  const double n = static_cast<double>(std::max<int64_t>(1, st.micro_batches));
  const double reward_mean = gsum(ro.score.sum().item<double>()) / B;
  const double reward_sq = gsum(ro.score.pow(2).sum().item<double>()) / B;
  const double gen_tokens = gsum(ro.response_mask.to(torch::kFloat).sum().item<double>());
  return {
      {"loss", gmean(st.loss / n)}, {"lr", lr},
      {"grad_norm", st.grad_norm}, {"critic_grad_norm", st.critic_grad_norm},
      {"reward_mean", reward_mean},
      {"reward_std", std::sqrt(std::max(0.0, reward_sq - reward_mean * reward_mean))},
      {"rm_score_raw", gsum(ro.raw_score.sum().item<double>()) / B},
      {"kl_to_ref", gsum(ro.kl.sum().item<double>()) / B}, {"beta", beta},
      {"policy_loss", gmean(st.policy_loss / n)}, {"value_loss", gmean(st.value_loss / n)},
      {"clip_frac", gmean(st.clip_frac / n)}, {"value_clip_frac", gmean(st.value_clip_frac / n)},
      {"approx_kl", gmean(st.approx_kl / n)}, {"entropy", gmean(st.entropy / n)},
      {"ptx_loss", gmean(st.ptx_tokens > 0 ? st.ptx_nll / st.ptx_tokens : 0.0)},
      {"response_length", gen_tokens / B},
      {"eos_rate", gsum(ro.has_eos.to(torch::kFloat).sum().item<double>()) / B},
      {"gen_tokens_per_s", gen_tokens / std::max(1e-9, comm.all_reduce_scalar(t.generate, ReduceOp::Max))},
      {"tokens_per_s", gsum(ro.attention_mask.to(torch::kFloat).sum().item<double>()) / std::max(1e-9, t.total)},
      {"time_generate_s", t.generate}, {"time_score_s", t.score}, {"time_train_s", t.train},
      {"optimizer_steps", st.optimizer_steps}, {"skipped", st.skipped}};
}

}  // namespace rlhf
