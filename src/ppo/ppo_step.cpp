// ppo_step.cpp — see ppo_step.h.
#include "ppo/ppo_step.h"

#include <cmath>

#include "common/core/rng.h"
#include "common/model/lm_loss.h"
#include "common/train/train_common.h"
#include "ppo/critic_free.h"
#include "ppo/kl_loss.h"

namespace rlhf {

void make_experience(PpoModels& m, Rollout& ro, const ExperienceOptions& opt, Communicator& comm) {
  torch::NoGradGuard ng;
  EvalMode actor_eval(*m.actor);
  const torch::Tensor off = ro.response_mask.logical_not();                             // [B, N]
  if (!ro.raw_score.defined()) ro.raw_score = score_rollout(m.reward, ro);                // [B]
  ro.score = ro.raw_score - opt.no_eos_penalty * ro.has_eos.logical_not().to(torch::kFloat);
  if (opt.score_clip > 0) ro.score = ro.score.clamp(-opt.score_clip, opt.score_clip);
  ro.old_logp = response_logprobs(m.actor, ro, opt.temperature).masked_fill(off, 0);     // [B, N]
  {
    AdaptersOff base_only(*m.reference);  // LoRA: the reference is the actor's base
    ro.ref_logp = response_logprobs(m.reference, ro, opt.temperature).masked_fill(off, 0);  // [B, N]
  }
  ro.kl = kl_penalty(ro.old_logp, ro.ref_logp, opt.estimator).masked_fill(off, 0);       // [B, N]
  const double reward_kl = opt.kl_in_loss ? 0.0 : opt.kl_coef;  // else β·KL is a loss term
  ro.rewards = compute_rewards(ro.kl, ro.score, ro.response_mask, reward_kl);            // [B, N]
  if (!uses_critic(opt.advantage)) {
    critic_free_advantages(ro, opt.advantage, opt.group, reward_kl, comm);
    return;
  }
  EvalMode critic_eval(*m.critic);
  ro.old_values = response_values(m.critic, ro).masked_fill(off, 0);                     // [B, N]
  GaeResult g = gae(ro.old_values, ro.rewards, ro.response_mask, opt.gamma, opt.gae_lambda);
  ro.returns = g.returns;                                                                // [B, N]
  // Whiten advantages with statistics over the GLOBAL batch (all ranks).
  MaskedStats st = masked_stats(g.advantages, ro.response_mask);
  MaskedStats glob{comm.all_reduce_scalar(st.sum), comm.all_reduce_scalar(st.sum_sq),
                   comm.all_reduce_scalar(st.count)};
  ro.advantages = masked_whiten_with(g.advantages, ro.response_mask, glob.mean(), glob.var());
}

// epoch_order (ppo_step.h): a stratified shuffle that does not depend on the number of ranks: the
// global batch (rank r holds rows [r·L, (r+1)·L)) is cut into
// `minibatch_rows · world` blocks of M = L / minibatch_rows consecutive rows, and minibatch k takes
// from every block j its row σ_j(k), σ_j a seeded permutation of [0, M) per (epoch, j). Every
// rank's blocks lie in its own share, so each rank holds exactly minibatch_rows rows of every
// minibatch, and the minibatches are the same sets of global rows on 1 rank or N. The rows
// arrive in random order (the sampler shuffles the prompts), so which rows share a block is
// random too. Platform-independent, a function of (seed, epoch): a resumed run repeats it.
torch::Tensor epoch_order(int64_t rows, int64_t minibatch_rows, uint64_t seed, int64_t epoch,
                          int rank, const torch::Device& dev) {
  const int64_t M = rows / minibatch_rows;  // minibatches per epoch
  const uint64_t epoch_seed = seed ^ (0xA0761D6478BD642FULL * static_cast<uint64_t>(epoch + 1));
  std::vector<int64_t> order(rows);
  for (int64_t jl = 0; jl < minibatch_rows; ++jl) {
    const int64_t j = rank * minibatch_rows + jl;  // the block's global index
    const auto sigma = seeded_permutation(M, mix_seed(epoch_seed, j, 0, 4));
    for (int64_t k = 0; k < M; ++k) order[k * minibatch_rows + jl] = jl * M + sigma[k];
  }
  return torch::tensor(order, torch::kLong).to(dev);
}

namespace {

// The token count of the whole minibatch: this rank's rows summed over all ranks (>= 1).
double minibatch_tokens(const Rollout& ro, const torch::Tensor& rows, Communicator& comm) {
  const double local = ro.response_mask.index_select(0, rows).sum().item<double>();
  return std::max(1.0, comm.all_reduce_scalar(local));
}

}  // namespace

std::vector<int64_t> ptx_window_starts(const UpdateOptions& opt, SplitMix64& rng, int rank, int world) {
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < opt.ptx_rows * world; ++i) {  // every rank draws the global list
    const int64_t s = static_cast<int64_t>(rng.uniform(opt.ptx->size() - opt.ptx_seq_len));
    if (i / opt.ptx_rows == rank) starts.push_back(s);
  }
  return starts;
}

bool minibatch_backward(PpoModels& m, const Rollout& ro, const torch::Tensor& rows,
                        const std::vector<int64_t>& ptx_starts, const UpdateOptions& opt,
                        Communicator& comm, const torch::Device& dev, UpdateStats& st,
                        const std::function<void()>& after_backward) {
  const int64_t n = rows.size(0);
  RLHF_CHECK(opt.micro_rows > 0 && n % opt.micro_rows == 0,
             "minibatch_backward: {} rows do not split into micro-batches of {}", n, opt.micro_rows);
  RLHF_CHECK(ptx_starts.empty() || opt.ptx != nullptr, "minibatch_backward: ptx windows without a ptx corpus");
  const int64_t accum = n / opt.micro_rows;
  const double world = comm.world_size();
  // Each term: Σ over this micro-batch's tokens / the minibatch's tokens over all ranks, times the
  // world size (the gradient all-reduce averages), so the step follows the minibatch's token mean.
  const double tokens = minibatch_tokens(ro, rows, comm);
  const double global_rows = static_cast<double>(n) * world;  // every rank holds n rows of it
  const int64_t ptx_rows = static_cast<int64_t>(ptx_starts.size());
  const double ptx_tokens = world * static_cast<double>(ptx_rows * (opt.ptx_seq_len - 1));
  bool finite = true;
  for (int64_t a = 0; a < accum; ++a) {
    const Rollout mb = ro.rows(rows.narrow(0, a * opt.micro_rows, opt.micro_rows));
    torch::Tensor entropy;
    auto logp = response_logprobs(m.actor, mb, opt.temperature, &entropy);                    // [b, N]
    const torch::Tensor w = loss_weights(mb.response_mask, opt.aggregation, tokens, global_rows,
                                         opt.horizon);                                        // [b, N]
    PolicyLoss pl = policy_loss(logp, mb.old_logp, mb.advantages, mb.response_mask, opt.clip_eps, tokens, w);
    torch::Tensor loss = pl.loss;  // this micro-batch's share
    ValueLoss vl{torch::zeros({}), torch::zeros({})};
    if (!m.critic.is_empty()) {  // critic-free estimators: no value loss
      auto values = response_values(m.critic, mb);                                           // [b, N]
      vl = value_loss(values, mb.old_values, mb.returns, mb.response_mask, opt.value_clip, tokens, w);
      loss = loss + opt.vf_coef * vl.loss;
    }
    torch::Tensor kl_term;
    if (opt.kl_loss_coef > 0) {  // ppo.kl_in_loss: β · Σ w · k(logp − ref_logp)
      kl_term = kl_loss(logp, mb.ref_logp, mb.response_mask, opt.kl_estimator, opt.kl_loss_coef, tokens, w);
      loss = loss + kl_term;
    }
    // The ptx windows, spread over the micro-batches (the first ptx_rows % accum take one more).
    const int64_t p0 = a * (ptx_rows / accum) + std::min(a, ptx_rows % accum);
    const int64_t pn = ptx_rows / accum + (a < ptx_rows % accum ? 1 : 0);
    torch::Tensor ptx_loss;
    if (pn > 0) {
      std::vector<int64_t> starts(ptx_starts.begin() + p0, ptx_starts.begin() + p0 + pn);
      LmLoss lm = batch_lm_loss(m.actor, build_stream_batch(opt.ptx->tokens, starts, opt.ptx_seq_len), dev);
      st.ptx_nll += lm.sum_nll.item<double>();
      st.ptx_tokens += static_cast<double>(lm.tokens);
      ptx_loss = opt.ptx_coef * lm.sum_nll / ptx_tokens;
    }
    (ptx_loss.defined() ? (loss + ptx_loss) * world : loss * world).backward();
    if (after_backward) after_backward();
    const double l = loss.item<double>();
    finite = finite && std::isfinite(l) && (!ptx_loss.defined() || std::isfinite(ptx_loss.item<double>()));
    st.loss += l;
    st.policy_loss += pl.loss.item<double>();
    st.value_loss += vl.loss.item<double>();
    st.clip_frac += pl.clip_frac.item<double>();
    st.value_clip_frac += vl.clip_frac.item<double>();
    st.approx_kl += pl.approx_kl.item<double>();
    if (kl_term.defined()) st.kl_loss += kl_term.item<double>();
    st.entropy += entropy.detach().masked_fill(mb.response_mask.logical_not(), 0).sum().item<double>() / tokens;
    ++st.micro_batches;
  }
  return finite;
}

UpdateStats ppo_update(PpoModels& m, AdamW& actor_opt, AdamW* critic_opt, const Rollout& ro,
                       const UpdateOptions& opt, Communicator& comm, const torch::Device& dev) {
  RLHF_CHECK(opt.minibatch_rows > 0 && ro.batch() % opt.minibatch_rows == 0 && opt.micro_rows > 0 &&
                 opt.minibatch_rows % opt.micro_rows == 0,
             "ppo_update: {} rows do not split into minibatches of {} and micro-batches of {}",
             ro.batch(), opt.minibatch_rows, opt.micro_rows);
  m.actor->train();
  RLHF_CHECK(m.critic.is_empty() == (critic_opt == nullptr), "ppo_update: a critic needs its optimizer");
  if (critic_opt) m.critic->train();
  const bool ptx = opt.ptx != nullptr && opt.ptx_coef > 0 && opt.ptx_rows > 0;
  SplitMix64 ptx_rng(opt.ptx_seed);
  UpdateStats st;
  for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
    const torch::Tensor order = epoch_order(ro.batch(), opt.minibatch_rows, opt.shuffle_seed, epoch,
                                            comm.rank(), ro.tokens.device());
    for (int64_t mb0 = 0; mb0 < ro.batch(); mb0 += opt.minibatch_rows) {
      const auto starts = ptx ? ptx_window_starts(opt, ptx_rng, comm.rank(), comm.world_size())
                              : std::vector<int64_t>{};
      const bool finite = minibatch_backward(m, ro, order.narrow(0, mb0, opt.minibatch_rows), starts,
                                             opt, comm, dev, st, [&] {
                                               actor_opt.after_backward();  // ZeRO stage >= 2
                                               if (critic_opt) critic_opt->after_backward();
                                             });
      StepResult ra = optimizer_step(actor_opt, comm, opt.lr, opt.grad_clip, opt.bucket_mb, finite);
      StepResult rc;
      if (critic_opt) rc = optimizer_step(*critic_opt, comm, opt.critic_lr, opt.grad_clip, opt.bucket_mb, finite);
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
  const double B = static_cast<double>(global_batch);
  const double steps = static_cast<double>(std::max<int64_t>(1, st.optimizer_steps));
  auto per_step = [&](double v) { return gsum(v) / steps; };  // mean over minibatches of global token means
  const double reward_mean = gsum(ro.score.sum().item<double>()) / B;
  const double reward_sq = gsum(ro.score.pow(2).sum().item<double>()) / B;
  const double gen_tokens = gsum(ro.response_mask.to(torch::kFloat).sum().item<double>());
  return {
      {"loss", per_step(st.loss)}, {"lr", lr},
      {"grad_norm", st.grad_norm}, {"critic_grad_norm", st.critic_grad_norm},
      {"reward_mean", reward_mean},
      {"reward_std", std::sqrt(std::max(0.0, reward_sq - reward_mean * reward_mean))},
      {"rm_score_raw", gsum(ro.raw_score.sum().item<double>()) / B},
      {"kl_to_ref", gsum(ro.kl.sum().item<double>()) / B}, {"beta", beta},
      {"policy_loss", per_step(st.policy_loss)}, {"value_loss", per_step(st.value_loss)},
      {"clip_frac", per_step(st.clip_frac)}, {"value_clip_frac", per_step(st.value_clip_frac)},
      {"approx_kl", per_step(st.approx_kl)}, {"entropy", per_step(st.entropy)},
      {"kl_loss", per_step(st.kl_loss)},
      {"ptx_loss", gsum(st.ptx_nll) / std::max(1.0, gsum(st.ptx_tokens))},
      {"response_length", gen_tokens / B},
      {"eos_rate", gsum(ro.has_eos.to(torch::kFloat).sum().item<double>()) / B},
      {"gen_tokens_per_s", gen_tokens / std::max(1e-9, comm.all_reduce_scalar(t.generate, ReduceOp::Max))},
      {"tokens_per_s", gsum(ro.attention_mask.to(torch::kFloat).sum().item<double>()) / std::max(1e-9, t.total)},
      {"time_generate_s", t.generate}, {"time_score_s", t.score}, {"time_train_s", t.train},
      {"optimizer_steps", st.optimizer_steps}, {"skipped", st.skipped}};
}

}  // namespace rlhf
