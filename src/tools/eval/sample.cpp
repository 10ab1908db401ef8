#include "tools/eval/sample.h"

#include <chrono>
#include <iostream>

#include "common/chat/chat_encode.h"
#include "common/core/check.h"
#include "common/dist/dist.h"
#include "common/model/generate.h"
#include "common/io/model_file.h"
#include "common/tokenizer/tokenizer.h"
#include "common/train/train_common.h"
#include "ppo/policy_eval.h"

namespace rlhf {

LoadedPolicy::LoadedPolicy(const std::string& checkpoint, const std::string& tokenizer,
                           const std::string& device, bool chat, const std::string& chat_template)
    : path(resolve_model_path(checkpoint)), file(read_model_h5(path)) {
  RLHF_CHECK(file.kind == "causal_lm", "{}: generation needs a causal_lm checkpoint, this one is '{}'",
             path, file.kind);
  const std::string spec = tokenizer.empty() ? file.tok.spec : tokenizer;
  RLHF_CHECK(!spec.empty(), "{}: the checkpoint records no tokenizer; pass --tokenizer SPEC", path);
  tok = load_tokenizer(spec);
  RLHF_CHECK(file.tok.identity.empty() || tok->identity() == file.tok.identity,
             "tokenizer '{}' has identity {} but the checkpoint {} was made with {}", spec,
             tok->identity(), path, file.tok.identity);
  dev = parse_device(device, world());
  model = CausalLM(file.cfg);
  load_parameters(*model, file);
  model->to(dev);
  model->eval();
  sids = special_ids(TokenizerInfo::of(*tok));
  for (int64_t s : file.tok.stops) add_stop_id(sids.stops, sids.eos, s);  // incl. its template's end of turn
  if (chat) {
    tpl = std::make_unique<ChatTemplate>(
        chat_template.empty() && !file.tok.chat_template.empty()
            ? ChatTemplate::with_tokenizer(file.tok.chat_template_name, file.tok.chat_template, spec)
            : ChatTemplate::select(chat_template.empty() ? "auto" : chat_template, spec));
    encoder = std::make_unique<ChatEncoder>(*tpl, *tok);
    add_stop_id(sids.stops, sids.eos, encoder->end_of_turn());
  }
}

LoadedPolicy::~LoadedPolicy() = default;

std::vector<int32_t> LoadedPolicy::encode(const std::string& prompt, const std::string& system) const {
  std::vector<int32_t> ids;
  if (encoder) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    ids = encoder->encode_prompt(messages);
  } else {
    ids = tok->encode(prompt);
    if (tok->bos_id() >= 0 && (tok->bos_id() != tok->eos_id() || ids.empty()))
      ids.insert(ids.begin(), tok->bos_id());
  }
  if (ids.empty()) ids.push_back(tok->eos_id());  // no BOS (Qwen): start after an end of text
  return ids;
}

std::string sample_text(const SampleOptions& o) {
  LoadedPolicy p(o.checkpoint, o.tokenizer, o.device, o.chat, o.chat_template);
  const std::vector<int32_t> ids = p.encode(o.prompt, o.system);
  auto [prompts, mask] = left_pad({ids}, p.tok->pad_id());
  const int64_t ppo_length = o.max_new_tokens > 0 ? 0 : ppo_response_length(o.checkpoint);
  const int64_t length = o.max_new_tokens > 0 ? o.max_new_tokens : ppo_length > 0 ? ppo_length : kSampleDefaultLength;
  const SamplingConfig sc = sampling_config(length, o.temperature, o.top_k, o.top_p, p.sids);
  auto t0 = std::chrono::steady_clock::now();
  GenerateOutput out = generate(p.model, prompts, mask, sc, std::vector<uint64_t>{o.seed});  // the engine
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto toks = out.tokens[0].to(torch::kCPU);
  auto keep = out.attention_mask[0].to(torch::kCPU);
  std::vector<int32_t> all;
  const int64_t first = o.chat ? out.prompt_len : 0;  // chat: the reply only
  for (int64_t i = first; i < toks.size(0); ++i)
    if (keep[i].item<bool>()) all.push_back(static_cast<int32_t>(toks[i].item<int64_t>()));
  std::cerr << fmt::format("sample: {} ({} {}, {} layers) on {}: {} prompt tokens, {} new tokens "
                           "in {:.2f} s ({:.1f} tok/s)\n", p.path, family_name(p.file.cfg.family),
                           p.file.cfg.d_model, p.file.cfg.n_layer, p.dev.str(), ids.size(), out.new_tokens,
                           secs, out.new_tokens / std::max(secs, 1e-9));
  return p.tok->decode(all);
}

int run_eval_sample(const SampleOptions& o) {
  std::string text = sample_text(o);
  if (world().is_root()) std::cout << text << std::endl;
  return 0;
}

void add_sampling_flags(CLI::App* c, int64_t& max_new_tokens, double& temperature, int64_t& top_k,
                        double& top_p, uint64_t& seed, int64_t default_length) {
  c->add_option("--max-new-tokens", max_new_tokens,
                fmt::format("tokens to sample per prompt (default: the PPO checkpoint's "
                            "ppo.max_new_tokens, else {})", default_length))
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  c->add_option("--temperature", temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str()->check(CLI::Range(0.0, 1000.0));
  c->add_option("--top-k", top_k, "top-k (0 = off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  c->add_option("--top-p", top_p, "nucleus top-p (1 = off)")->capture_default_str()->check(CLI::Range(1e-9, 1.0));
  c->add_option("--seed", seed, "sampling seed")->capture_default_str();
}

void register_eval_sample(CLI::App& app, int* exit_code) {
  static SampleOptions o;  // lives as long as the app's callbacks
  auto* c = app.add_subcommand("sample", "generate text from a causal-LM checkpoint (text on stdout)");
  c->add_option("--checkpoint", o.checkpoint, "checkpoint dir, run dir or model.h5")->required();
  c->add_option("--prompt", o.prompt, "prompt text (may be empty)")->required();
  add_sampling_flags(c, o.max_new_tokens, o.temperature, o.top_k, o.top_p, o.seed, kSampleDefaultLength);
  c->add_option("--tokenizer", o.tokenizer, "override the checkpoint's tokenizer spec (same identity)");
  c->add_option("--device", o.device, "cpu | cuda | cuda:N (default: cuda when available)");
  c->add_flag("--chat", o.chat, "the prompt is a user message, rendered by the chat template; prints the reply");
  c->add_option("--system", o.system, "with --chat: a system message first");
  c->add_option("--chat-template", o.chat_template,
                "with --chat: auto | chatml | hh | llama3 | mistral | FILE.jinja (default: the "
                "checkpoint's template, else auto)");
  c->callback([=] { *exit_code = run_eval_sample(o); });
}

}  // namespace rlhf
