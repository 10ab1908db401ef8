// dpo_trainer.cpp — see dpo_trainer.h for the contract.
#include "dpo/dpo_trainer.h"

#include "dpo/dpo_config.h"

#include <algorithm>
#include <cmath>

#include "common/model/lora.h"
#include "common/train/dry_run.h"
#include "common/train/log.h"
#include "common/train/loop.h"
#include "common/train/train_common.h"
#include "dpo/dpo_loss.h"
#include "dpo/preference_batch.h"

namespace rlhf {

namespace {

// The reference of dpo.reference: a causal LM with the policy's tokenizer, frozen, no dropout.
CausalLM load_reference_file(const std::string& spec, const ModelSetup& ms) {
  const std::string path = from_key("dpo.reference", [&] { return resolve_model_path(spec); });
  ModelFile f = from_key("dpo.reference", [&] { return read_model_h5(path); });
  RLHF_CHECK(f.kind == "causal_lm", "dpo.reference: {} is a '{}' model; the reference must be a "
             "policy (kind causal_lm), e.g. the SFT checkpoint", path, f.kind);
  RLHF_CHECK(f.tok.identity == ms.tok.identity, "dpo.reference: {} has tokenizer '{}', the policy "
             "has '{}'", path, f.tok.identity, ms.tok.identity);
  ModelConfig rc = f.cfg;
  rc.dropout = 0.0;
  CausalLM ref(rc);
  load_parameters(*ref, f);
  return ref;
}

}  // namespace

DpoModels load_dpo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root) {
  torch::manual_seed(cfg.run.seed);
  DpoModels m;
  ModelFile init = read_model_h5(ms.init_path);
  m.policy = CausalLM(ms.cfg);
  load_parameters(*m.policy, init);
  m.policy->to(dev);
  attach_configured_lora(*m.policy, without_adapter_dropout(cfg.lora, "dpo", "policy", "DPO margin", root), &init,
                         "the DPO policy");
  if (dpo_section(cfg).reference.empty() && cfg.lora.enabled()) {
    m.reference = m.policy;
    if (root) log_info("# dpo: LoRA policy; reference = the policy's base (adapters off)");
  } else if (dpo_section(cfg).reference.empty()) {
    ModelConfig rc = ms.cfg;
    rc.dropout = 0.0;
    m.reference = CausalLM(rc);
    load_parameters(*m.reference, init);
  } else {
    m.reference = load_reference_file(dpo_section(cfg).reference, ms);
  }
  if (!m.shared()) {
    m.reference->to(dev);
    for (auto& p : m.reference->parameters()) p.set_requires_grad(false);
    m.reference->eval();
  }
  return m;
}

namespace {

// Reference log-probs [B] of a batch: no gradients, eval mode (no dropout); the policy's base
// with its adapters off when the reference is shared.
torch::Tensor reference_logprobs(DpoModels& m, const SeqBatch& b, const torch::Device& dev) {
  torch::NoGradGuard no_grad;
  if (!m.shared()) return sequence_logprobs(m.reference, b, dev);
  EvalMode eval_mode(*m.policy);
  AdaptersOff off(*m.policy);
  return sequence_logprobs(m.policy, b, dev);
}

// Sums over micro-batches (this rank), all-reduced into a metrics row by `row`.
struct DpoSums {
  double loss_x_groups = 0;  // Σ loss · groups
  double pairs = 0, ties = 0, groups = 0, correct = 0, margin = 0;
  double chosen_reward = 0, rejected_reward = 0, chosen_logp = 0, rejected_logp = 0;
  void add(const DpoLoss& l) {
    loss_x_groups += l.loss.item<double>() * l.groups;
    pairs += l.pairs;
    ties += l.ties;
    groups += l.groups;
    correct += l.correct;
    margin += l.margin_sum;
    chosen_reward += l.chosen_reward_sum;
    rejected_reward += l.rejected_reward_sum;
    chosen_logp += l.chosen_logp_sum;
    rejected_logp += l.rejected_logp_sum;
  }
  // Per-pair means over all ranks; `prefix` "" (training) or "eval_".
  nlohmann::json row(Communicator& comm, const std::string& prefix) const {
    auto sum = [&](double v) { return comm.all_reduce_scalar(v); };
    const double p = std::max(1.0, sum(pairs));
    return {{prefix + "accuracy", sum(correct) / p}, {prefix + "margin", sum(margin) / p},
            {prefix + "chosen_reward", sum(chosen_reward) / p}, {prefix + "rejected_reward", sum(rejected_reward) / p},
            {prefix + "chosen_logp", sum(chosen_logp) / p}, {prefix + "rejected_logp", sum(rejected_logp) / p},
            {prefix + "pairs", sum(pairs)}, {prefix + "ties", sum(ties)}};
  }
};

// One DPO step on this rank's groups idx, in `accum` micro-batches of train.micro_batch_size
// groups: reference log-probs (no grad), policy log-probs, dpo_loss, backward.
StepStats dpo_step(DpoModels& m, const RankedData& train, const std::vector<int64_t>& idx, int64_t accum,
                   const Config& cfg, const DpoOptions& opt, const SpecialIds& ids, int64_t max_len,
                   Communicator& comm, const torch::Device& dev, AdamW& adam) {
  // Loss = mean over the global batch's groups: each group's loss / G_global (x world: the
  // gradient all-reduce averages over ranks), as rm_step.
  const double global_groups = static_cast<double>(cfg.train.global_batch_size);
  DpoSums s;
  int64_t tokens = 0, truncated = 0;
  for (int64_t a = 0; a < accum; ++a) {
    const std::vector<int64_t> groups(idx.begin() + a * cfg.train.micro_batch_size,
                                      idx.begin() + (a + 1) * cfg.train.micro_batch_size);
    const GroupBatch gb = ranked_group_batch(train, groups, ids, max_len, cfg.train.packing);
    const torch::Tensor ref = reference_logprobs(m, gb.seq, dev);  // [R]
    const torch::Tensor pol = sequence_logprobs(m.policy, gb.seq, dev);  // [R]
    DpoLoss l = dpo_loss(pol, ref, gb.offsets, gb.ranks, opt, target_counts(gb.seq));
    (l.loss * (static_cast<double>(l.groups) * comm.world_size() / global_groups)).backward();
    adam.after_backward();  // ZeRO stage >= 2: reduce-scatter, free the gradients
    s.add(l);
    tokens += gb.seq.attention_mask.sum().item<int64_t>();
    truncated += gb.seq.truncated;
  }
  StepStats st;
  st.loss = comm.all_reduce_scalar(s.loss_x_groups) / global_groups;
  st.tokens = static_cast<double>(tokens);
  st.fields = s.row(comm, "");
  st.fields["truncated"] = comm.all_reduce_scalar(static_cast<double>(truncated));
  return st;
}

// Held-out DPO metrics on every group of a ranked dataset, sharded over ranks (collective). The
// reference is frozen: its log-probs are computed on the first call and kept (this rank's rows).
class DpoEvaluator {
 public:
  DpoEvaluator(const RankedData& data, const DpoOptions& opt, const SpecialIds& ids, int64_t max_len,
               int64_t micro_groups)
      : data_(data), opt_(opt), ids_(ids), max_len_(max_len), micro_(std::max<int64_t>(1, micro_groups)) {}

  nlohmann::json operator()(DpoModels& m, Communicator& comm, const torch::Device& dev) {
    if (data_.size() == 0) return nlohmann::json::object();
    torch::NoGradGuard no_grad;
    if (!ref_.defined()) ref_ = torch::full({static_cast<int64_t>(data_.responses.size())}, NAN, torch::kFloat);
    EvalMode eval_mode(*m.policy);
    DpoSums s;
    for (auto [begin, end] : rank_chunks(data_.size(), micro_, comm)) {
      std::vector<int64_t> groups;
      for (int64_t g = begin; g < end; ++g) groups.push_back(g);
      const GroupBatch gb = ranked_group_batch(data_, groups, ids_, max_len_);
      const torch::Tensor rows = torch::tensor(gb.responses, torch::kLong);  // [R]
      torch::Tensor ref = ref_.index_select(0, rows);                        // [R]
      if (torch::isnan(ref).any().item<bool>()) {
        ref = reference_logprobs(m, gb.seq, dev).to(torch::kCPU, torch::kFloat);
        ref_.index_copy_(0, rows, ref);
      }
      const torch::Tensor pol = sequence_logprobs(m.policy, gb.seq, dev);   // [R]
      s.add(dpo_loss(pol, ref.to(pol.device(), pol.scalar_type()), gb.offsets, gb.ranks, opt_,
                     target_counts(gb.seq)));
    }
    nlohmann::json j = s.row(comm, "eval_");
    const double groups = comm.all_reduce_scalar(s.groups);
    j["eval_loss"] = comm.all_reduce_scalar(s.loss_x_groups) / std::max(1.0, groups);
    return j;
  }

 private:
  const RankedData& data_;
  DpoOptions opt_;
  SpecialIds ids_;
  int64_t max_len_, micro_;
  torch::Tensor ref_;  // [responses] float32 on the CPU; NaN = not computed yet
};

}  // namespace

int run_dpo(int argc, char** argv) {
  return run_stage_cli(dpo_stage(), argc, argv, [](const RunRequest& r) { return run_dpo(r); });
}

int run_dpo(const RunRequest& req) {
  RLHF_CHECK(!req.cfg.init.empty(), "init is not set: DPO starts from a policy checkpoint (the SFT run)");
  RunContext ctx = start_run(req);
  const Config& cfg = ctx.cfg;
  Communicator& comm = *ctx.comm;
  const torch::Device dev = ctx.device;

  ModelSetup ms = resolve_init_model(cfg);
  // No dropout (as PPO, and TRL's DPO trainer): the reference's log-probs are without it, so
  // dropout noise would enter every margin h (at step 1 with reference = policy, h would not be 0).
  if (ms.cfg.dropout > 0 && comm.is_root())
    log_info("# dpo: model.dropout = {} overridden to 0 for the policy", ms.cfg.dropout);
  ms.cfg.dropout = 0.0;
  RLHF_CHECK(!cfg.data.train.empty(), "data.train is not set: give a ranked dataset from rlhf_prep");
  RankedData train = from_key("data.train", [&] { return RankedData::load(cfg.data.train, ms.tok.identity); });
  accept_dataset(ms, train.meta);
  RankedData eval;
  if (!cfg.data.eval.empty()) {
    eval = from_key("data.eval", [&] { return RankedData::load(cfg.data.eval, ms.tok.identity); });
    accept_dataset(ms, eval.meta);
  }
  const SpecialIds ids = for_rows(special_ids(ms.tok), train.meta);
  const int64_t max_len = seq_len_limit(cfg, ms.cfg);
  const DpoOptions opt = dpo_options(dpo_section(cfg));

  DpoModels m = load_dpo_models(cfg, ms, dev, comm.is_root());
  TrainLoop loop(ctx, ms, {{"model.h5", m.policy.get(), "causal_lm", {{"dpo", true}}}},
                 {{m.policy.get(), "policy"}}, train.size());
  const int64_t accum = loop.accum();
  loop.metrics().message(fmt::format(
      "# dpo: {} trained params, {} train groups ({} responses), {} ranks x {} groups x {} accum; "
      "loss {}{} beta {} label_smoothing {}; reference {}",
      loop.n_params(), train.size(), train.responses.size(), comm.world_size(), cfg.train.micro_batch_size,
      accum, kDpoLossNames.name(dpo_section(cfg).loss),
      dpo_section(cfg).loss == DpoLossKind::Ipo ? (dpo_section(cfg).ipo_average ? " (per-token means)" : " (sequence sums)") : "",
      dpo_section(cfg).beta, dpo_section(cfg).label_smoothing,
      m.shared() ? "the policy's base (LoRA adapters off)" : dpo_section(cfg).reference.empty() ? cfg.init : dpo_section(cfg).reference));
  DpoEvaluator eval_fn(eval, opt, ids, max_len, cfg.train.micro_batch_size);
  auto evaluate = [&]() -> nlohmann::json {
    GatheredParams full(loop.optimizer(0));  // ZeRO stage 3: whole weights for the evaluation
    return eval_fn(m, comm, dev);
  };

  m.policy->train();
  const int exit_code = loop.run([&]() -> StepStats {
    return dpo_step(m, train, loop.sampler().next(cfg.train.global_batch_size), accum, cfg, opt, ids,
                    max_len, comm, dev, loop.optimizer(0));
  }, evaluate);
  nlohmann::json summary = loop.finish("dpo", nlohmann::json::object(), evaluate);
  loop.metrics().message(fmt::format(
      "# dpo done: step {}, loss {:.4f}{}, checkpoint {}", loop.step(), summary["final_loss"].get<double>(),
      summary.contains("eval_accuracy")
          ? fmt::format(", held-out pair accuracy {:.3f}, margin {:.3f}", summary["eval_accuracy"].get<double>(),
                        summary["eval_margin"].get<double>())
          : std::string(),
      summary["checkpoint"].get<std::string>()));
  return exit_code;
}

}  // namespace rlhf
