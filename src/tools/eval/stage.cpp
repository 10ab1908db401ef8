#include "tools/eval/stage.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "common/dist/dist.h"
#include "common/task/synth_task.h"
#include "common/train/train_common.h"
#include "ppo/policy_eval.h"
#include "tools/eval/sample.h"
#include "rm/rm_eval.h"

namespace rlhf {

namespace {

struct EvalOpts {
  std::string checkpoint, data, policy, reward_model, reference, prompts, a, b, run_dir, data_dir;
  int64_t max_new_tokens = 0, micro_batch = 32, max_prompts = 0, max_rows = 0;  // 0: see response_length
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 1;
};

void emit(const nlohmann::json& j) {
  if (world().is_root()) std::cout << j.dump() << std::endl;
}

torch::Device eval_device() { return parse_device("auto", world()); }

// A checkpoint evaluated on a dataset: their chat templates must agree (adopt_chat_template).
void check_chat_template(const ModelFile& f, const DatasetMeta& m, const std::string& ckpt) {
  TokenizerInfo t = f.tok;
  adopt_chat_template(t, m, ckpt);
}

constexpr int64_t kDefaultResponseLength = 48;

// Tokens sampled per prompt: --max-new-tokens when given, else the ppo.max_new_tokens of the first
// PPO checkpoint among `policies` (the length it was trained to), else kDefaultResponseLength.
int64_t response_length(const EvalOpts& o, const std::vector<std::string>& policies) {
  if (o.max_new_tokens > 0) return o.max_new_tokens;
  for (const auto& p : policies)
    if (const int64_t n = ppo_response_length(p); n > 0) return n;
  return kDefaultResponseLength;
}

PolicyEvalOptions policy_opts(const EvalOpts& o, int64_t max_new_tokens) {
  PolicyEvalOptions p;
  p.sampling = sampling_config(max_new_tokens, o.temperature, o.top_k, o.top_p, SpecialIds{});
  p.seed = o.seed;
  p.max_prompts = o.max_prompts;
  p.micro_batch = o.micro_batch;
  return p;
}

int ppl(const EvalOpts& o) {
  auto dev = eval_device();
  ModelFile f;
  CausalLM m = load_causal_lm(o.checkpoint, dev, &f);
  SftData d = SftData::load(o.data, f.tok.identity);
  check_chat_template(f, d.meta, o.checkpoint);
  auto [loss, tokens] = eval_lm_loss(m, d, for_rows(special_ids(f.tok), d.meta), f.cfg.max_seq_len, o.micro_batch,
                                     o.max_rows > 0 ? o.max_rows : d.size(), world(), dev);
  emit({{"loss", loss}, {"perplexity", std::exp(loss)}, {"tokens", tokens}, {"rows", std::min<int64_t>(d.size(), o.max_rows > 0 ? o.max_rows : d.size())}});
  return 0;
}

// On the embedded task: accuracy per pair kind ("perfect>wrong_item": the better response's
// error kind > the worse one's; see synth_error_kind), from the per-response rewards.
nlohmann::json synth_pair_kinds(const RankedData& d, const Tokenizer& tok, const std::vector<float>& r) {
  struct Count { int64_t pairs = 0, correct = 0; };
  std::map<std::string, Count> by_kind;
  for (int64_t g = 0; g < d.size(); ++g) {
    const std::string prompt = tok.decode(d.prompt.row(g));
    std::vector<std::string> kinds;
    for (int64_t q = d.first_response(g); q < d.end_response(g); ++q)
      kinds.push_back(synth_error_kind(prompt, tok.decode(d.responses.row(q))));
    for (int64_t i = d.first_response(g); i < d.end_response(g); ++i)
      for (int64_t j = d.first_response(g); j < d.end_response(g); ++j) {
        if (d.ranks[i] >= d.ranks[j]) continue;  // i strictly better than j
        Count& c = by_kind[kinds[i - d.first_response(g)] + ">" + kinds[j - d.first_response(g)]];
        ++c.pairs;
        if (r[i] > r[j]) ++c.correct;
      }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, c] : by_kind)
    out[k] = {{"pairs", c.pairs}, {"accuracy", static_cast<double>(c.correct) / c.pairs}};
  return out;
}

nlohmann::json rm_accuracy(const std::string& ckpt, const std::string& data, const torch::Device& dev, int64_t micro) {
  ModelFile f;
  ScalarModel rm = load_scalar_model(ckpt, dev, &f);
  RankedData d = RankedData::load(data, f.tok.identity);
  check_chat_template(f, d.meta, ckpt);
  const bool synth = d.meta.source == "synth";
  std::vector<float> rewards;
  RankEval e = evaluate_ranked(rm, d, for_rows(special_ids(f.tok), d.meta), f.cfg.max_seq_len, std::max<int64_t>(1, micro / 8), 0, world(), dev,
                               synth ? &rewards : nullptr);
  nlohmann::json j = {{"accuracy", e.accuracy()}, {"pairs", e.pairs}, {"mean_margin", e.mean_margin()},
                      {"loss", e.loss}, {"groups", e.groups}};
  if (synth) j["by_pair_kind"] = synth_pair_kinds(d, *load_tokenizer(f.tok.spec), rewards);
  return j;
}

int reward(const EvalOpts& o) {
  auto dev = eval_device();
  ModelFile pf;
  CausalLM policy = load_causal_lm(o.policy, dev, &pf);
  ModelFile rf;
  ScalarModel rm = load_scalar_model(o.reward_model, dev, &rf);
  RLHF_CHECK(rf.tok.identity == pf.tok.identity, "policy tokenizer {} differs from the reward model's {}", pf.tok.identity, rf.tok.identity);
  std::unique_ptr<CausalLM> ref;
  if (!o.reference.empty()) ref = std::make_unique<CausalLM>(load_causal_lm(o.reference, dev));
  PromptData p = PromptData::load(o.prompts, pf.tok.identity);
  check_chat_template(pf, p.meta, o.policy);
  check_chat_template(rf, p.meta, o.reward_model);
  auto tok = load_tokenizer(pf.tok.spec);
  const int64_t length = response_length(o, {o.policy});
  PolicyEvalResult r = evaluate_policy(policy, ref.get(), RewardSource(rm), p, *tok, pf.cfg.max_seq_len, policy_opts(o, length), world(), dev);
  nlohmann::json j = r.to_json();
  j["max_new_tokens"] = length;
  emit(j);
  return 0;
}

int compare(const EvalOpts& o) {
  auto dev = eval_device();
  ModelFile af;
  CausalLM a = load_causal_lm(o.a, dev, &af);
  CausalLM b = load_causal_lm(o.b, dev);
  ScalarModel rm = load_scalar_model(o.reward_model, dev);
  PromptData p = PromptData::load(o.prompts, af.tok.identity);
  check_chat_template(af, p.meta, o.a);
  auto tok = load_tokenizer(af.tok.spec);
  const int64_t length = response_length(o, {o.a, o.b});
  CompareResult c = compare_policies(a, b, RewardSource(rm), p, *tok, af.cfg.max_seq_len, policy_opts(o, length), world(), dev);
  nlohmann::json j = {{"prompts", c.prompts}, {"win_rate_rm", c.win_rate_rm}, {"max_new_tokens", length}};
  if (!std::isnan(c.win_rate_hidden)) j["win_rate_hidden"] = c.win_rate_hidden;
  j.update(c.a.to_json("a_"));
  j.update(c.b.to_json("b_"));
  emit(j);
  return 0;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception&) {
    return {};
  }
}

int report(const EvalOpts& o) {
  auto dev = eval_device();
  const std::string sft = o.run_dir + "/sft", rmd = o.run_dir + "/rm", ppo = o.run_dir + "/ppo";
  nlohmann::json out = {{"run_dir", o.run_dir}};
  auto acc = rm_accuracy(rmd, o.data_dir + "/ranked_eval.h5", dev, o.micro_batch);
  out["rm_heldout_accuracy"] = acc["accuracy"];
  out["rm_heldout_pairs"] = acc["pairs"];
  out["rm_heldout_margin"] = acc["mean_margin"];
  if (acc.contains("by_pair_kind")) out["rm_heldout_by_pair_kind"] = acc["by_pair_kind"];
  ModelFile sf;
  CausalLM sft_m = load_causal_lm(sft, dev, &sf);
  CausalLM ppo_m = load_causal_lm(ppo, dev);
  ScalarModel rm = load_scalar_model(rmd, dev);
  PromptData p = PromptData::load(o.data_dir + "/prompts_eval.h5", sf.tok.identity);
  check_chat_template(sf, p.meta, sft);
  auto tok = load_tokenizer(sf.tok.spec);
  const int64_t length = response_length(o, {ppo});
  PolicyEvalOptions po = policy_opts(o, length);
  const RewardSource reward(rm);
  PolicyEvalResult rs = evaluate_policy(sft_m, &sft_m, reward, p, *tok, sf.cfg.max_seq_len, po, world(), dev);
  PolicyEvalResult rp = evaluate_policy(ppo_m, &sft_m, reward, p, *tok, sf.cfg.max_seq_len, po, world(), dev);
  CompareResult c = compare_policies(ppo_m, sft_m, reward, p, *tok, sf.cfg.max_seq_len, po, world(), dev);
  out["eval_prompts"] = rp.prompts;
  out["sft_reward_mean"] = rs.reward_mean;
  out["ppo_reward_mean"] = rp.reward_mean;
  out["ppo_kl_to_sft"] = rp.kl_to_ref;
  out["sft_length_mean"] = rs.length_mean;
  out["ppo_length_mean"] = rp.length_mean;
  out["sft_eos_rate"] = rs.eos_rate;
  out["ppo_eos_rate"] = rp.eos_rate;
  out["ppo_win_rate_vs_sft_rm"] = c.win_rate_rm;
  if (!std::isnan(rs.hidden_mean)) {
    out["sft_hidden_score"] = rs.hidden_mean;
    out["ppo_hidden_score"] = rp.hidden_mean;
    out["ppo_win_rate_vs_sft_hidden"] = c.win_rate_hidden;
  }
  nlohmann::json ps = read_json_file(ppo + "/summary.json");
  for (const char* k : {"ptx_eval_loss_start", "ptx_eval_loss_end", "ptx_eval_loss_rise"})
    if (ps.contains(k)) out[std::string("ppo_") + k] = ps[k];
  out["sampling"] = {{"temperature", o.temperature}, {"max_new_tokens", length}, {"seed", o.seed}};
  emit(out);
  return 0;
}

// Max |Δ| between the tensors of two model files with the same parameter names and shapes.
int weights_diff(const EvalOpts& o) {
  ModelFile a = read_model_h5(resolve_model_path(o.a)), b = read_model_h5(resolve_model_path(o.b));
  RLHF_CHECK(a.tensors.size() == b.tensors.size(), "{} has {} tensors, {} has {}", o.a, a.tensors.size(), o.b, b.tensors.size());
  double max_diff = 0, max_abs = 0;
  std::string worst;
  for (const auto& [name, ta] : a.tensors) {
    auto it = b.tensors.find(name);
    RLHF_CHECK(it != b.tensors.end(), "tensor '{}' of {} is missing from {}", name, o.a, o.b);
    RLHF_CHECK(ta.sizes() == it->second.sizes(), "tensor '{}': shapes differ", name);
    const double d = (ta.to(torch::kDouble) - it->second.to(torch::kDouble)).abs().max().item<double>();
    if (d > max_diff) { max_diff = d; worst = name; }
    max_abs = std::max(max_abs, ta.abs().max().item<double>());
  }
  emit({{"max_abs_diff", max_diff}, {"worst_tensor", worst}, {"tensors", a.tensors.size()}, {"max_abs_value", max_abs}});
  return 0;
}

void sampling_flags(CLI::App* c, EvalOpts& o) {
  add_sampling_flags(c, o.max_new_tokens, o.temperature, o.top_k, o.top_p, o.seed, kDefaultResponseLength);
  c->add_option("--max-prompts", o.max_prompts, "evaluate only the first N prompts (0 = all)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--micro-batch", o.micro_batch, "prompts per generation batch")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
}

}  // namespace

void register_stage_eval_commands(CLI::App& app, int* exit_code) {
  static EvalOpts o;  // lives as long as the app's callbacks
  auto* c = app.add_subcommand("ppl", "held-out loss and perplexity of a policy on an SFT dataset");
  c->add_option("--checkpoint", o.checkpoint, "policy checkpoint (dir, run dir or model.h5)")->required();
  c->add_option("--data", o.data, "SFT dataset (.h5)")->required();
  c->add_option("--max-rows", o.max_rows, "only the first N rows (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_option("--micro-batch", o.micro_batch, "rows per forward")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  c->callback([=] { *exit_code = ppl(o); });

  c = app.add_subcommand("rm-acc", "pairwise accuracy of a reward model on ranked data");
  c->add_option("--checkpoint", o.checkpoint, "reward model checkpoint")->required();
  c->add_option("--data", o.data, "ranked dataset (.h5)")->required();
  c->add_option("--micro-batch", o.micro_batch, "responses per forward (approx.)")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  c->callback([=] {
    emit(rm_accuracy(o.checkpoint, o.data, eval_device(), o.micro_batch));
    *exit_code = 0;
  });

  c = app.add_subcommand("reward", "mean reward, KL to a reference and length of a policy's samples");
  c->add_option("--policy", o.policy, "policy checkpoint")->required();
  c->add_option("--reward-model", o.reward_model, "reward model checkpoint")->required();
  c->add_option("--reference", o.reference, "reference policy for the KL (usually the SFT checkpoint)");
  c->add_option("--prompts", o.prompts, "prompts dataset (.h5)")->required();
  sampling_flags(c, o);
  c->callback([=] { *exit_code = reward(o); });

  c = app.add_subcommand("compare", "win rate of policy A over policy B under the reward model");
  c->add_option("--a", o.a, "policy A checkpoint")->required();
  c->add_option("--b", o.b, "policy B checkpoint")->required();
  c->add_option("--reward-model", o.reward_model, "reward model checkpoint")->required();
  c->add_option("--prompts", o.prompts, "prompts dataset (.h5)")->required();
  sampling_flags(c, o);
  c->callback([=] { *exit_code = compare(o); });

  c = app.add_subcommand("weights-diff", "max |difference| between two checkpoints' parameters");
  c->add_option("--a", o.a, "first checkpoint")->required();
  c->add_option("--b", o.b, "second checkpoint")->required();
  c->callback([=] { *exit_code = weights_diff(o); });

  c = app.add_subcommand("report", "the pipeline's evaluation (RUN/eval.json): RM accuracy, SFT vs PPO");
  c->add_option("--run-dir", o.run_dir, "pipeline run directory (with sft/, rm/, ppo/)")->required();
  c->add_option("--data-dir", o.data_dir, "directory with ranked_eval.h5 and prompts_eval.h5")->required();
  sampling_flags(c, o);
  c->callback([=] { *exit_code = report(o); });
}

}  // namespace rlhf
