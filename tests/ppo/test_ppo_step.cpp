// PPO update normalisation (src/ppo/ppo_step.cpp, minibatch_backward): the gradient of a minibatch
// is that of its token means (policy and value losses over all its response tokens, the ptx LM
// loss over all its pretraining targets), whatever the micro-batch size.
//  - micro_rows 1 and micro_rows = the whole minibatch give the same actor and critic gradients on
//    ragged responses (lengths 6, 1, 4, 2), with clipping active and a ptx term;
//  - both equal an independent reference: one backward of policy_loss + vf_coef · value_loss as
//    masked means over the whole batch + ptx_coef · the token-mean LM loss of all windows at once;
//  - the per-micro-batch mean the code used before (mean of each micro-batch's token mean) gives
//    a clearly different gradient on these rows, so the comparison can fail.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/model/lm_loss.h"
#include "common/train/train_common.h"
#include "ppo/kl_loss.h"
#include "ppo/ppo_step.h"
#include "support/test_models.h"

namespace rlhf {
namespace {

constexpr int64_t kB = 4, kP = 3, kN = 6;

// A rollout by hand: 4 rows, prompts of 3, 2, 3, 1 tokens (left-padded), responses of 6, 1, 4, 2
// tokens (right-padded).
Rollout ragged_rollout() {
  torch::manual_seed(5);
  Rollout ro;
  ro.P = kP;
  ro.N = kN;
  ro.tokens = torch::randint(3, 41, {kB, kP + kN}, torch::kLong);
  const std::vector<int64_t> prompt_len = {3, 2, 3, 1}, resp_len = {6, 1, 4, 2};
  ro.attention_mask = torch::zeros({kB, kP + kN}, torch::kBool);
  ro.response_mask = torch::zeros({kB, kN}, torch::kBool);
  for (int64_t b = 0; b < kB; ++b) {
    ro.attention_mask[b].narrow(0, kP - prompt_len[b], prompt_len[b] + resp_len[b]).fill_(true);
    ro.response_mask[b].narrow(0, 0, resp_len[b]).fill_(true);
  }
  ro.tokens.masked_fill_(ro.attention_mask.logical_not(), 0);
  ro.positions = positions_from_mask(ro.attention_mask);
  ro.has_eos = torch::tensor({false, true, true, false});
  return ro;
}

struct Nets {
  CausalLM actor{nullptr}, reference{nullptr};
  ScalarModel reward{nullptr}, critic{nullptr};
};

Nets make_nets() {
  Nets n;
  torch::manual_seed(7);
  n.actor = CausalLM(testing::tiny_config(Family::Llama, 2));
  torch::manual_seed(7);
  n.reference = CausalLM(testing::tiny_config(Family::Llama, 2));
  torch::manual_seed(8);
  n.reward = ScalarModel(testing::tiny_config(Family::Llama, 2));
  torch::manual_seed(9);
  n.critic = ScalarModel(testing::tiny_config(Family::Llama, 2));
  return n;
}

std::vector<torch::Tensor> grads_of(Nets& n) {
  std::vector<torch::Tensor> g;
  for (auto* m : std::vector<torch::nn::Module*>{n.actor.get(), n.critic.get()})
    for (auto& p : m->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return g;
}

void zero_grads(Nets& n) {
  for (auto* m : std::vector<torch::nn::Module*>{n.actor.get(), n.critic.get()})
    for (auto& p : m->parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
}

// max |a − b| / max |b| over all tensors.
double rel_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, (a[i] - b[i]).abs().max().item<double>());
    den = std::max(den, b[i].abs().max().item<double>());
  }
  return num / den;
}

TEST(PpoUpdate, MicroBatchSizeDoesNotChangeTheGradient) {
  Nets n = make_nets();
  PpoModels m{n.actor, n.reference, n.reward, n.critic};
  Communicator& comm = world();
  Rollout ro = ragged_rollout();
  ExperienceOptions eo;
  eo.kl_coef = 0.1;
  make_experience(m, ro, eo, comm);
  {  // move the actor and critic away from the rollout's weights: ratios ≠ 1, clipping active
    torch::NoGradGuard ng;
    torch::manual_seed(10);
    for (auto& p : n.actor->parameters()) p.add_(0.15 * torch::randn_like(p));
    for (auto& p : n.critic->parameters()) p.add_(0.3 * torch::randn_like(p));
  }
  PretrainData ptx;
  for (int i = 0; i < 200; ++i) ptx.tokens.push_back(3 + (i * 7) % 38);
  UpdateOptions opt;
  opt.clip_eps = 0.2;
  opt.value_clip = 0.2;
  opt.vf_coef = 0.5;
  opt.ptx = &ptx;
  opt.ptx_rows = 3;  // spread 1+1+1+0 over 4 micro-batches, 3 over 1
  opt.ptx_seq_len = 5 + 0;
  opt.ptx_coef = 0.7;
  const std::vector<int64_t> starts = {0, 17, 101};
  const torch::Tensor rows = torch::arange(kB, torch::kLong);
  n.actor->train();
  n.critic->train();

  std::vector<std::vector<torch::Tensor>> grads;
  double clip_frac = 0;
  for (int64_t micro : {int64_t{1}, kB}) {
    zero_grads(n);
    opt.micro_rows = micro;
    UpdateStats st;
    ASSERT_TRUE(minibatch_backward(m, ro, rows, starts, opt, comm, torch::kCPU, st));
    grads.push_back(grads_of(n));
    clip_frac = st.clip_frac;
  }
  EXPECT_GT(clip_frac, 0.0) << "the clipped branch should be exercised";

  // The reference: the whole batch's token means, in one backward.
  zero_grads(n);
  {
    auto logp = response_logprobs(n.actor, ro, 1.0);
    auto pl = policy_loss(logp, ro.old_logp, ro.advantages, ro.response_mask, opt.clip_eps);
    auto values = response_values(n.critic, ro);
    auto vl = value_loss(values, ro.old_values, ro.returns, ro.response_mask, opt.value_clip);
    LmLoss lm = batch_lm_loss(n.actor, build_stream_batch(ptx.tokens, starts, opt.ptx_seq_len), torch::kCPU);
    ASSERT_EQ(lm.tokens, 3 * 4);
    (pl.loss + opt.vf_coef * vl.loss + opt.ptx_coef * lm.sum_nll / static_cast<double>(lm.tokens)).backward();
  }
  const auto reference = grads_of(n);
  EXPECT_LT(rel_diff(grads[0], grads[1]), 1e-5) << "micro 1 vs micro 4";
  EXPECT_LT(rel_diff(grads[0], reference), 1e-5) << "micro 1 vs the whole-batch token mean";
  EXPECT_LT(rel_diff(grads[1], reference), 1e-5) << "micro 4 vs the whole-batch token mean";

  // The old normalisation (each micro-batch's own token mean, averaged over micro-batches) weights
  // row 1's single token like row 0's six: a different gradient on these rows.
  zero_grads(n);
  for (int64_t b = 0; b < kB; ++b) {
    const Rollout mb = ro.rows(torch::tensor({b}, torch::kLong));
    auto pl = policy_loss(response_logprobs(n.actor, mb, 1.0), mb.old_logp, mb.advantages, mb.response_mask, opt.clip_eps);
    auto vl = value_loss(response_values(n.critic, mb), mb.old_values, mb.returns, mb.response_mask, opt.value_clip);
    ((pl.loss + opt.vf_coef * vl.loss) / static_cast<double>(kB)).backward();
  }
  {
    LmLoss lm = batch_lm_loss(n.actor, build_stream_batch(ptx.tokens, starts, opt.ptx_seq_len), torch::kCPU);
    (opt.ptx_coef * lm.sum_nll / static_cast<double>(lm.tokens)).backward();
  }
  EXPECT_GT(rel_diff(grads_of(n), reference), 1e-2) << "per-micro-batch means should differ here";
}

// Stats: each minibatch's metrics are its global token means, the same for any micro size.
TEST(PpoUpdate, StatsAreTokenMeansOfTheMinibatch) {
  Nets n = make_nets();
  PpoModels m{n.actor, n.reference, n.reward, n.critic};
  Rollout ro = ragged_rollout();
  make_experience(m, ro, ExperienceOptions{}, world());
  UpdateOptions opt;
  opt.micro_rows = 1;
  UpdateStats st1, st4;
  n.actor->train();
  n.critic->train();
  const torch::Tensor rows = torch::arange(kB, torch::kLong);
  minibatch_backward(m, ro, rows, {}, opt, world(), torch::kCPU, st1);
  opt.micro_rows = kB;
  minibatch_backward(m, ro, rows, {}, opt, world(), torch::kCPU, st4);
  // First pass, same weights as the rollout: the value loss is ½·mean over the 13 response tokens
  // of (V − R)², V = old values.
  torch::NoGradGuard ng;
  const double want = 0.5 * masked_mean((ro.old_values - ro.returns).pow(2), ro.response_mask).item<double>();
  EXPECT_NEAR(st1.value_loss, want, 1e-6 * std::max(1.0, want));
  EXPECT_NEAR(st4.value_loss, want, 1e-6 * std::max(1.0, want));
  EXPECT_NEAR(st1.entropy, st4.entropy, 1e-5);
  EXPECT_EQ(ro.response_mask.sum().item<int64_t>(), 13);
}

// ppo.kl_in_loss: the rewards carry no KL (only the score at the last response token), and the
// update adds β · Σ k3(logp − ref_logp) / tokens, here checked against the k3 written out inline
// (e^{−x} − 1 + x) on the whole batch in one backward, for micro-batches of 1 row.
TEST(PpoUpdate, KlInLossMovesTheKlFromTheRewardsToTheLoss) {
  Nets n = make_nets();
  {  // the actor away from the reference, so the KL is not 0
    torch::NoGradGuard ng;
    torch::manual_seed(11);
    for (auto& p : n.actor->parameters()) p.add_(0.1 * torch::randn_like(p));
  }
  PpoModels m{n.actor, n.reference, n.reward, n.critic};
  Rollout ro = ragged_rollout(), plain = ragged_rollout();
  ExperienceOptions eo;
  eo.kl_coef = 0.3;
  eo.estimator = KlEstimator::K3;
  make_experience(m, plain, eo, world());
  eo.kl_in_loss = true;
  make_experience(m, ro, eo, world());
  ASSERT_GT(ro.kl.abs().sum().item<double>(), 1e-3);
  EXPECT_TRUE(torch::allclose(ro.rewards, compute_rewards(ro.kl, ro.score, ro.response_mask, 0.0)));
  EXPECT_GT((plain.rewards - ro.rewards).abs().max().item<double>(), 1e-4) << "KL left the rewards";
  EXPECT_NEAR(ro.rewards.sum().item<double>(), ro.score.sum().item<double>(), 1e-5);

  UpdateOptions opt;
  opt.micro_rows = 1;
  opt.vf_coef = 0.5;
  opt.kl_loss_coef = 0.3;
  opt.kl_estimator = KlEstimator::K3;
  n.actor->train();
  n.critic->train();
  zero_grads(n);
  UpdateStats st;
  ASSERT_TRUE(minibatch_backward(m, ro, torch::arange(kB, torch::kLong), {}, opt, world(), torch::kCPU, st));
  const auto got = grads_of(n);
  zero_grads(n);
  double kl_ref = 0;
  {
    auto logp = response_logprobs(n.actor, ro, 1.0);
    auto pl = policy_loss(logp, ro.old_logp, ro.advantages, ro.response_mask, opt.clip_eps);
    auto vl = value_loss(response_values(n.critic, ro), ro.old_values, ro.returns, ro.response_mask, opt.value_clip);
    const torch::Tensor x = logp - ro.ref_logp;                                            // [B, N]
    const torch::Tensor k3 = ((-x).exp() - 1.0 + x).masked_fill(ro.response_mask.logical_not(), 0);
    const torch::Tensor kl = 0.3 * k3.sum() / 13.0;  // 13 response tokens
    kl_ref = kl.item<double>();
    (pl.loss + opt.vf_coef * vl.loss + kl).backward();
  }
  EXPECT_LT(rel_diff(got, grads_of(n)), 1e-5);
  EXPECT_GT(kl_ref, 0.0);
  EXPECT_NEAR(st.kl_loss, kl_ref, 1e-6);
}

// ppo.loss_aggregation through minibatch_backward, micro-batches of 1 row, ratios away from 1: the
// per-response forms equal an independent reference built from each row's own losses — its token
// mean (seq_mean_token_mean) or its token sum / the budget 6 (seq_mean_token_sum_norm) of the
// policy, value and KL terms — averaged over the 4 rows in one backward; token_mean differs.
TEST(PpoUpdate, PerResponseAggregationAveragesEachResponsesLoss) {
  Nets n = make_nets();
  PpoModels m{n.actor, n.reference, n.reward, n.critic};
  Rollout ro = ragged_rollout();
  ExperienceOptions eo;
  eo.kl_coef = 0.1;
  make_experience(m, ro, eo, world());
  {
    torch::NoGradGuard ng;
    torch::manual_seed(12);
    for (auto& p : n.actor->parameters()) p.add_(0.1 * torch::randn_like(p));
    for (auto& p : n.critic->parameters()) p.add_(0.2 * torch::randn_like(p));
  }
  UpdateOptions opt;
  opt.micro_rows = 1;
  opt.vf_coef = 0.5;
  opt.kl_loss_coef = 0.2;
  opt.kl_estimator = KlEstimator::K2;
  opt.horizon = 6;
  n.actor->train();
  n.critic->train();
  const torch::Tensor rows = torch::arange(kB, torch::kLong);
  auto run = [&](LossAggregation agg) {
    zero_grads(n);
    opt.aggregation = agg;
    UpdateStats st;
    EXPECT_TRUE(minibatch_backward(m, ro, rows, {}, opt, world(), torch::kCPU, st));
    return grads_of(n);
  };
  const auto token_mean = run(LossAggregation::TokenMean);
  for (LossAggregation agg : {LossAggregation::SeqMeanTokenMean, LossAggregation::SeqMeanTokenSumNorm}) {
    const auto got = run(agg);
    zero_grads(n);
    for (int64_t b = 0; b < kB; ++b) {
      const Rollout mb = ro.rows(torch::tensor({b}, torch::kLong));
      const double len = mb.response_mask.sum().item<double>();
      const double norm = agg == LossAggregation::SeqMeanTokenMean ? len : 6.0;  // per response
      auto logp = response_logprobs(n.actor, mb, 1.0);
      auto pl = policy_loss(logp, mb.old_logp, mb.advantages, mb.response_mask, opt.clip_eps, norm);
      auto vl = value_loss(response_values(n.critic, mb), mb.old_values, mb.returns, mb.response_mask,
                           opt.value_clip, norm);
      auto kl = kl_loss(logp, mb.ref_logp, mb.response_mask, KlEstimator::K2, 0.2, norm);
      ((pl.loss + opt.vf_coef * vl.loss + kl) / static_cast<double>(kB)).backward();
    }
    EXPECT_LT(rel_diff(got, grads_of(n)), 1e-5) << kLossAggregationNames.name(agg);
    EXPECT_GT(rel_diff(token_mean, got), 1e-2) << kLossAggregationNames.name(agg) << " vs token_mean";
  }
}

// Every epoch visits the minibatches in a new order (a different seeded shuffle per epoch), and the
// order is a function of (seed, epoch) alone: a resumed run, which derives the seed from (run.seed,
// step), repeats it. Each is a permutation of the rows.
TEST(PpoUpdate, EpochOrdersDifferPerEpochAndRepeat) {
  auto order = [](uint64_t seed, int64_t epoch) {
    const torch::Tensor o = epoch_order(8, 2, seed, epoch, 0, torch::kCPU);
    return std::vector<int64_t>(o.data_ptr<int64_t>(), o.data_ptr<int64_t>() + o.numel());
  };
  const auto e0 = order(42, 0), e1 = order(42, 1), e2 = order(42, 2);
  for (const auto& e : {e0, e1, e2}) {
    auto sorted = e;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  }
  EXPECT_NE(e0, e1);
  EXPECT_NE(e1, e2);
  EXPECT_EQ(e0, order(42, 0));   // the same again after a resume
  EXPECT_NE(e0, order(43, 0));   // the next iteration's seed: another order
}

}  // namespace
}  // namespace rlhf
