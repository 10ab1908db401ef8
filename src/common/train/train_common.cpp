#include "common/train/train_common.h"

#include "common/train/log.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "common/io/checkpoint.h"
#include "common/core/h5.h"
#include "common/model/lm_loss.h"

namespace rlhf {

ModelSetup resolve_init_model(const Config& cfg) {
  if (cfg.init.empty()) return resolve_model(cfg, cfg.init);
  return from_key("init", [&] { return resolve_model(cfg, cfg.init); });
}

ModelSetup resolve_model(const Config& cfg, const std::string& init) {
  ModelSetup s;
  if (init.empty()) {
    s.cfg = cfg.model;
    s.tokenizer = load_tokenizer(cfg.tokenizer);
    s.tok = TokenizerInfo::of(*s.tokenizer);
    RLHF_CHECK(s.cfg.vocab_size >= s.tokenizer->vocab_size(),
               "model.vocab_size = {} is smaller than the vocabulary of tokenizer '{}' ({})",
               s.cfg.vocab_size, cfg.tokenizer, s.tokenizer->vocab_size());
    return s;
  }
  s.init_path = resolve_model_path(init);
  ModelFile f = read_model_header(s.init_path);
  s.cfg = f.cfg;
  s.cfg.dropout = cfg.model.dropout;
  s.cfg.activation_checkpointing = cfg.model.activation_checkpointing;
  s.tok = f.tok;
  s.tokenizer = load_tokenizer(f.tok.spec);
  RLHF_CHECK(s.tokenizer->identity() == f.tok.identity,
             "{}: checkpoint tokenizer '{}' no longer matches its files at '{}' (now '{}')",
             s.init_path, f.tok.identity, f.tok.spec, s.tokenizer->identity());
  return s;
}

LoraOptions without_adapter_dropout(const LoraOptions& opt, const std::string& stage,
                                    const std::string& models, const std::string& inside, bool root) {
  LoraOptions out = opt;
  if (opt.enabled() && opt.dropout > 0 && root)
    log_info("# {}: model.lora.dropout = {} overridden to 0 for the {} (dropout noise would enter "
             "the {})", stage, opt.dropout, models, inside);
  out.dropout = 0.0;
  return out;
}

void attach_configured_lora(torch::nn::Module& m, const LoraOptions& opt, const ModelFile* base,
                            const std::string& what) {
  if (!opt.enabled()) return;
  RLHF_CHECK(base && !base->path.empty(),
             "model.lora.rank = {}: LoRA adapts a pretrained model, but {} starts from scratch "
             "(set init to a checkpoint, or model.lora.rank: 0)", opt.rank, what);
  LoraInfo info;
  info.opt = opt;
  info.base = std::filesystem::absolute(base->path).lexically_normal().string();
  info.base_fingerprint = base_fingerprint(base->tensors);
  attach_lora(m, info);
}

SpecialIds special_ids(const TokenizerInfo& t) {
  return SpecialIds{t.bos, t.eos, std::max<int64_t>(0, t.pad), t.stops};
}

void adopt_chat_template(TokenizerInfo& tok, const DatasetMeta& data, const std::string& model) {
  const std::string who = model.empty() ? std::string("the model") : model;
  if (tok.chat_template.empty()) {
    if (!data.chat()) return;
    tok.chat_template = data.chat_template;
    tok.chat_template_name = data.chat_template_name;
    tok.end_of_turn = data.end_of_turn;
    add_stop_id(tok.stops, tok.eos, data.end_of_turn);
    return;
  }
  RLHF_CHECK(data.chat(),
             "{}: the dataset holds plain rows, but {} was trained with chat template '{}': "
             "prepare it with rlhf_prep --chat-template (the same template)", data.path, who,
             tok.chat_template_name);
  RLHF_CHECK(data.chat_template == tok.chat_template,
             "{}: the dataset was rendered with chat template '{}', but {} was trained with chat "
             "template '{}' (the texts differ): prepare the data with the model's template",
             data.path, data.chat_template_name, who, tok.chat_template_name);
}

void accept_dataset(ModelSetup& ms, const DatasetMeta& data) {
  RLHF_CHECK(data.vocab_size <= ms.cfg.vocab_size,
             "{}: the dataset's ids go up to {} (vocab_size {}) but the model's vocabulary has {} "
             "entries", data.path, data.vocab_size - 1, data.vocab_size, ms.cfg.vocab_size);
  if (data.kind != DataKind::Pretrain) adopt_chat_template(ms.tok, data, ms.init_path);
}

int64_t seq_len_limit(const Config& cfg, const ModelConfig& m) {
  return cfg.data.max_seq_len > 0 ? std::min(cfg.data.max_seq_len, m.max_seq_len) : m.max_seq_len;
}

nlohmann::json cursor_json(const Cursor& c) { return {{"epoch", c.epoch}, {"position", c.position}}; }
Cursor cursor_from_json(const nlohmann::json& j) {
  Cursor c;
  c.epoch = j.at("epoch").get<int64_t>();
  c.position = j.at("position").get<int64_t>();
  return c;
}

namespace {
// The device the checkpointed models live on (their first parameter's; CPU when none has one).
torch::Device models_device(const std::vector<CkptModel>& models) {
  for (const auto& m : models) {
    const auto params = m.module->parameters();
    if (!params.empty()) return params[0].device();
  }
  return torch::kCPU;
}
}  // namespace

std::string save_training_checkpoint(CheckpointManager& mgr, Communicator& comm, int64_t step,
                                     const std::vector<CkptModel>& models,
                                     const std::vector<CkptOptim>& optims,
                                     const ModelConfig& mcfg, const TokenizerInfo& tok,
                                     nlohmann::json state, const std::string& config_text) {
  torch::Tensor rng = get_rng_state().contiguous();
  torch::Tensor all_rng = comm.all_gather(rng.unsqueeze(0));  // [world, bytes]
  // On GPUs also each rank's CUDA generator (dropout there draws from it, not from the CPU's).
  const torch::Device dev = models_device(models);
  const bool cuda = comm.all_reduce_scalar(dev.is_cuda() ? 1.0 : 0.0) == comm.world_size();
  torch::Tensor all_cuda_rng;  // [world, bytes]
  if (cuda) all_cuda_rng = comm.all_gather(get_device_rng_state(dev).contiguous().unsqueeze(0));
  state["step"] = step;
  state["world_size"] = comm.world_size();
  state["config"] = config_text;
  // ZeRO: the full moments (and stage-3 parameters) by name, as an unsharded run writes them.
  for (const auto& o : optims) o.opt->gather_full();
  struct Release {
    const std::vector<CkptOptim>& optims;
    ~Release() {
      for (const auto& o : optims) o.opt->release_full();
    }
  } release{optims};
  return mgr.save(step, [&](const std::string& dir) {
    for (const auto& m : models) save_model_h5(dir + "/" + m.file, *m.module, mcfg, tok, m.kind, m.extra);
    H5File f = H5File::create(dir + "/optim.h5");
    for (const auto& o : optims) o.opt->save(f, o.prefix);
    f.write_tensor("rng/cpu", all_rng);
    if (cuda) f.write_tensor("rng/cuda", all_cuda_rng);
    f.close();
    write_state_yaml(dir + "/state.yaml", state);
  });
}

nlohmann::json load_training_checkpoint(const std::string& dir, Communicator& comm,
                                        const std::vector<CkptModel>& models,
                                        const std::vector<CkptOptim>& optims) {
  nlohmann::json state = read_state_yaml(dir + "/state.yaml");
  // ZeRO: full parameters to load into (stage 3); every rank then keeps its shards of the
  // weights and of the by-name moments (any stage and rank count wrote the same layout).
  for (const auto& o : optims) o.opt->gather_full();
  for (const auto& m : models)  // a LoRA model loads its base and its adapters unmerged
    load_parameters(*m.module, read_model_h5(dir + "/" + m.file, LoraLoad::Separate));
  H5File f = H5File::open_read(dir + "/optim.h5");
  for (const auto& o : optims) o.opt->load(f, o.prefix);
  for (const auto& o : optims) o.opt->release_full();
  torch::Tensor all_rng = f.read_tensor("rng/cpu");  // [saved_world, bytes]
  const bool same_world = all_rng.size(0) == comm.world_size();
  if (same_world) set_rng_state(all_rng[comm.rank()].clone());
  else if (comm.is_root())
    log_info("# note: checkpoint saved with {} ranks, resuming on {}: RNG streams restart",
             all_rng.size(0), comm.world_size());
  const torch::Device dev = models_device(models);
  if (f.has("rng/cuda")) {
    torch::Tensor all_cuda = f.read_tensor("rng/cuda");  // [saved_world, bytes]
    if (dev.is_cuda() && same_world) set_device_rng_state(dev, all_cuda[comm.rank()].clone());
    else if (!dev.is_cuda() && comm.is_root())
      log_warn("# warning: {}/optim.h5 holds CUDA generator states but this run is on {}: "
               "only the CPU generator is restored (dropout draws differ from the GPU run)",
               dir, dev.str());
  } else if (dev.is_cuda() && comm.is_root()) {
    log_info("# note: {}/optim.h5 has no CUDA generator state (saved on CPU or by an older "
             "version): the CUDA stream restarts from the seed", dir);
  }
  return state;
}

torch::Tensor batch_hidden(Transformer& trunk, const SeqBatch& b, const torch::Device& dev) {
  if (b.packed.defined())
    return trunk->forward_packed(b.tokens.to(dev), b.positions.to(dev), b.packed.to(dev));  // [1, T, C]
  return trunk(b.tokens.to(dev), b.positions.to(dev), b.attention_mask.to(dev));           // [B, T, C]
}

LmLoss batch_lm_loss(CausalLM& model, const SeqBatch& b, const torch::Device& dev) {
  auto h = batch_hidden(model->trunk, b, dev);
  return fused_lm_loss(h, model->head_weight(), b.tokens.to(dev), b.loss_mask.to(dev));
}

std::pair<double, int64_t> eval_lm_loss(CausalLM& model, const SftData& data, const SpecialIds& ids,
                                        int64_t max_len, int64_t micro_batch, int64_t max_rows,
                                        Communicator& comm, const torch::Device& device) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*model);
  const int64_t n = std::min<int64_t>(data.size(), max_rows);
  double nll = 0;
  int64_t tokens = 0;
  for (auto [begin, end] : rank_chunks(n, micro_batch, comm)) {
    std::vector<PromptResponse> rows;
    for (int64_t i = begin; i < end; ++i) rows.push_back(data.row(i));
    SeqBatch b = build_seq_batch(rows, ids, max_len);
    LmLoss l = batch_lm_loss(model, b, device);
    nll += l.sum_nll.item<double>();
    tokens += l.tokens;
  }
  nll = comm.all_reduce_scalar(nll);
  tokens = static_cast<int64_t>(comm.all_reduce_scalar(static_cast<double>(tokens)));
  return {tokens > 0 ? nll / tokens : 0.0, tokens};
}

double eval_stream_loss(CausalLM& model, const PretrainData& data, int64_t seq_len, int64_t windows,
                        Communicator& comm, const torch::Device& dev) {
  torch::NoGradGuard ng;
  EvalMode eval_mode(*model);
  std::vector<int64_t> starts;  // this rank's windows, all in one batch
  for (auto [w, end] : rank_chunks(windows, 1, comm)) starts.push_back(w * seq_len);
  double nll = 0, tokens = 0;
  if (!starts.empty()) {
    SeqBatch b = build_stream_batch(data.tokens, starts, seq_len);
    LmLoss l = batch_lm_loss(model, b, dev);
    nll = l.sum_nll.item<double>();
    tokens = static_cast<double>(l.tokens);
  }
  return comm.all_reduce_scalar(nll) / std::max(1.0, comm.all_reduce_scalar(tokens));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace rlhf
