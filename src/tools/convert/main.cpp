// rlhf_convert — model format conversion; the commands are in convert.h.
#include <CLI/CLI.hpp>

#include "common/core/version.h"
#include "common/dist/dist.h"
#include "tools/convert/convert.h"
#include "common/core/process.h"

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] {
    CLI::App app{"rlhf_convert: import/export models (Hugging Face, llama2.c) to/from model.h5"};
    app.require_subcommand(1);
    app.set_version_flag("--version", rlhf::version_line("rlhf_convert"));
    std::string in, out, tok, model, family, cfg_json, kind = "causal_lm";
    uint64_t seed = 0;
    bool force = false;
    int rc = 0;
    auto* a = app.add_subcommand("from-hf", "Hugging Face folder (safetensors) -> CKPT/model.h5");
    a->add_option("--in", in, "HF model folder (config.json, model.safetensors)")->required();
    a->add_option("--out", out, "checkpoint directory to create")->required();
    a->add_option("--tokenizer", tok, "tokenizer spec (default: the folder's tokenizer.json, else tokenizer.model, else vocab.json + merges.txt)");
    a->add_flag("--force", force, "replace the model.h5 of an existing checkpoint directory");
    a->callback([&] { rc = rlhf::from_hf(in, out, tok, force); });
    auto* b = app.add_subcommand("to-hf", "CKPT -> Hugging Face folder (model.safetensors, config.json)");
    b->add_option("--in", in, "checkpoint (dir, run dir or model.h5)")->required();
    b->add_option("--out", out, "output folder")->required();
    std::string dtype = "fp32";
    double shard_mb = 0;
    bool drop_bias = false;
    b->add_option("--dtype", dtype, "weights dtype: fp32 | bf16")
        ->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    b->add_option("--max-shard-mb", shard_mb, "split the weights into shards of at most this many "
                  "MB (0 = one file)")->check(CLI::NonNegativeNumber)->capture_default_str();
    b->add_flag("--force", force, "replace the config and weights of an existing HF folder");
    b->add_flag("--drop-score-bias", drop_bias, "scalar model: export even when score.bias != 0 "
                "(HF's score has no bias)");
    b->callback([&] {
      rlhf::HfExportOptions o;
      o.dtype = dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;
      o.max_shard_bytes = static_cast<int64_t>(shard_mb * 1024 * 1024);
      o.drop_score_bias = drop_bias;
      rc = rlhf::to_hf(in, out, o, force);
    });
    auto* c = app.add_subcommand("from-llama2c", "llama2.c legacy .bin + tokenizer.bin -> CKPT/model.h5");
    c->add_option("--model", model, "llama2.c model file")->required();
    c->add_option("--tokenizer", tok, "llama2.c tokenizer file")->required();
    c->add_option("--out", out, "checkpoint directory to create")->required();
    c->add_flag("--force", force, "replace the model.h5 of an existing checkpoint directory");
    c->callback([&] { rc = rlhf::from_llama2c(model, tok, out, force); });
    auto* m = app.add_subcommand("merge-lora", "LoRA CKPT (adapters + base reference) -> DIR/model.h5 with the adapters merged");
    m->add_option("--in", in, "LoRA checkpoint (dir, run dir or model.h5)")->required();
    m->add_option("--out", out, "output directory")->required();
    m->add_flag("--force", force, "replace the model.h5 of an existing directory");
    m->callback([&] { rc = rlhf::merge_lora(in, out, force); });
    auto* d = app.add_subcommand("init", "freshly initialised model -> CKPT/model.h5");
    d->add_option("--family", family, "gpt2 | llama | mistral | qwen2 | qwen3")->required();
    d->add_option("--tokenizer", tok, "tokenizer spec (byte, a tokenizer folder or file: see rlhf_prep --help)")->required();
    d->add_option("--out", out, "checkpoint directory to create")->required();
    d->add_option("--config-json", cfg_json, "ModelConfig fields as JSON, or @file.json");
    d->add_option("--seed", seed, "torch::manual_seed before initialisation")->capture_default_str();
    d->add_option("--kind", kind, "causal_lm | scalar")->capture_default_str();
    d->add_flag("--force", force, "replace the model.h5 of an existing checkpoint directory");
    bool header_only = false;
    d->add_flag("--header-only", header_only, "write the config and tokenizer without weights "
                "(plan memory with --dry-run for models too large to build here)");
    d->callback([&] { rc = rlhf::init_model(family, cfg_json, tok, seed, kind, out, force, header_only); });
    std::string device = "cpu";
    int64_t batch = 3, len = 16;
    auto* e = app.add_subcommand("logits", "parity aid: a model's logits on seeded random tokens");
    e->add_option("--in", in, "causal_lm checkpoint")->required();
    e->add_option("--out", out, "output .safetensors (tokens, mask, logits)")->required();
    e->add_option("--seed", seed, "token seed")->capture_default_str();
    e->add_option("--batch", batch, "rows (odd rows are left-padded)")->capture_default_str();
    e->add_option("--len", len, "tokens per row")->capture_default_str();
    e->add_option("--device", device, "cpu | cuda | cuda:N")->capture_default_str();
    e->callback([&] { rc = rlhf::dump_logits(in, out, seed, batch, len, device); });
    int64_t new_tokens = 32;
    auto* g = app.add_subcommand("greedy", "parity aid: greedy generation from seeded random prompts");
    g->add_option("--in", in, "causal_lm checkpoint")->required();
    g->add_option("--out", out, "output .safetensors (tokens, prompt_mask)")->required();
    g->add_option("--seed", seed, "prompt seed")->capture_default_str();
    g->add_option("--batch", batch, "prompts (odd rows are left-padded)")->capture_default_str();
    g->add_option("--len", len, "prompt length")->capture_default_str();
    g->add_option("--new", new_tokens, "tokens to generate")->capture_default_str();
    g->add_option("--device", device, "cpu | cuda | cuda:N")->capture_default_str();
    g->callback([&] { rc = rlhf::dump_greedy(in, out, seed, batch, len, new_tokens, device); });
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return rc;
  });
}
