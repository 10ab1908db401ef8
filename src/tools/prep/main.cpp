// rlhf_prep — raw data -> tokenized HDF5 datasets (docs/DATA.md), the embedded task (synth),
// inspect and encode. Single process; run it without mpirun (or on one rank).
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/core/check.h"
#include "common/core/version.h"
#include "common/dist/dist.h"
#include "tools/prep/chat.h"
#include "tools/prep/commands.h"
#include "tools/prep/encode.h"
#include "tools/prep/synth.h"
#include "common/core/process.h"

namespace {

struct CommonFlags {
  rlhf::PrepOptions o;
  std::string format = "jsonl";
  std::string over_length = "truncate";
};

void add_common(CLI::App* sub, CommonFlags& f, bool with_format, bool with_lengths) {
  sub->add_option("--in", f.o.inputs, "input file (repeatable; .gz read directly)")->required();
  sub->add_option("--out", f.o.out, "output .h5 (written to a temp file, then renamed)")->required();
  sub->add_option("--tokenizer", f.o.tokenizer,
                  "byte | a folder with tokenizer.json, tokenizer.model or vocab.json + merges.txt | a "
                  "tokenizer.json | a SentencePiece .model | a llama2.c tokenizer .bin")
      ->capture_default_str();
  sub->add_flag("--strict", f.o.strict, "reject the first bad row (error names file:line)");
  if (with_format) {
    sub->add_option("--format", f.format, "jsonl | messages | oasst-tree | hh-rlhf")
        ->capture_default_str();
    sub->add_option("--chat-template", f.o.chat_template,
                    "render rows as conversations: auto (the tokenizer's own) | chatml | hh | "
                    "llama3 | mistral | FILE.jinja (default: auto for messages / oasst-tree, "
                    "plain text rows otherwise)");
    sub->add_option("--prompt-key", f.o.prompt_key)->capture_default_str();
    sub->add_option("--response-key", f.o.response_key, "(TRL's 'completion' works)")
        ->capture_default_str();
    sub->add_option("--chosen-key", f.o.chosen_key)->capture_default_str();
    sub->add_option("--rejected-key", f.o.rejected_key)->capture_default_str();
    sub->add_option("--messages-key", f.o.messages_key)->capture_default_str();
  }
  if (with_lengths) {
    sub->add_option("--max-prompt-tokens", f.o.max_prompt_tokens, "0 = unlimited (keeps the END)")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--max-response-tokens", f.o.max_response_tokens,
                    "0 = unlimited (keeps the START)")->check(CLI::NonNegativeNumber);
    sub->add_option("--over-length", f.over_length, "truncate | skip")->capture_default_str();
  }
}

}  // namespace

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&]() -> int {
    CLI::App app{"rlhf_prep: raw data -> tokenized HDF5 datasets"};
    app.require_subcommand(1);
    app.set_version_flag("--version", rlhf::version_line("rlhf_prep"));

    CommonFlags sft, ranked, prompts, pretrain;
    auto* c_sft = app.add_subcommand(
        "sft", "JSONL {prompt, response} or {messages} (or oasst-tree / hh-rlhf)");
    add_common(c_sft, sft, true, true);
    auto* c_ranked = app.add_subcommand(
        "ranked", "JSONL {prompt, responses, ranks} or {[prompt,] chosen, rejected}, text or messages "
        "(or oasst-tree / hh-rlhf)");
    add_common(c_ranked, ranked, true, true);
    auto* c_prompts = app.add_subcommand("prompts", "JSONL strings or {prompt}, or {prompt|messages: [...]}");
    add_common(c_prompts, prompts, true, true);
    auto* c_pretrain = app.add_subcommand("pretrain", "plain text files -> one token stream");
    add_common(c_pretrain, pretrain, false, false);
    c_pretrain->add_flag("--paragraphs", pretrain.o.paragraphs,
                         "blank-line separated paragraphs are documents (default: each file)");

    std::string synth_dir;
    uint64_t synth_seed = 1234;
    rlhf::SynthSizes sizes;
    auto* c_synth = app.add_subcommand("synth", "write the embedded task's datasets into a folder");
    c_synth->add_option("--out", synth_dir, "output folder")->required();
    c_synth->add_option("--seed", synth_seed, "generator seed")->capture_default_str();
    c_synth->add_option("--n-sft", sizes.sft)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--n-sft-eval", sizes.sft_eval)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--n-ranked", sizes.ranked)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--n-ranked-eval", sizes.ranked_eval)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--n-prompts", sizes.prompts)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--n-prompts-eval", sizes.prompts_eval)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--pretrain-bytes", sizes.pretrain_bytes)->capture_default_str()->check(CLI::NonNegativeNumber);
    c_synth->add_option("--pretrain-eval-bytes", sizes.pretrain_eval_bytes)->capture_default_str()->check(CLI::NonNegativeNumber);

    std::string inspect_file;
    auto* c_inspect = app.add_subcommand("inspect", "summarise a dataset .h5");
    c_inspect->add_option("file", inspect_file, "dataset .h5")->required();
    int64_t inspect_rows = 0;
    c_inspect->add_option("--rows", inspect_rows,
                          "also print the first N rows decoded, as JSON lines (special tokens kept)")
        ->check(CLI::NonNegativeNumber);

    rlhf::EncodeOptions enc;
    std::string enc_in, enc_out;
    auto* c_encode = app.add_subcommand(
        "encode", "JSON string (or {\"text\": ...}) per line -> JSON id array per line");
    c_encode->add_option("--tokenizer", enc.tokenizer)->capture_default_str();
    c_encode->add_flag("--add-special-tokens", enc.add_special_tokens,
                       "apply the tokenizer's special-token template (BOS ...)");
    c_encode->add_option("--threads", enc.threads, "encoding threads (0 = all cores)")
        ->capture_default_str()->check(CLI::Range(0, 1024));
    c_encode->add_option("--in", enc_in, "input file (default: stdin)");
    c_encode->add_option("--out", enc_out, "output file (default: stdout)");
    std::string dec_tok = "byte", dec_in, dec_out;
    auto* c_decode = app.add_subcommand("decode", "JSON id array per line -> JSON string per line");
    c_decode->add_option("--tokenizer", dec_tok)->capture_default_str();
    c_decode->add_option("--in", dec_in, "input file (default: stdin)");
    c_decode->add_option("--out", dec_out, "output file (default: stdout)");

    std::string chat_tok = "byte", chat_choice = "auto", chat_in, chat_out;
    auto* c_chat = app.add_subcommand(
        "chat-template",
        "JSONL {messages, add_generation_prompt, ...variables} -> {\"text\": ...} per line, rendered "
        "by a chat template");
    c_chat->add_option("--tokenizer", chat_tok,
                       "tokenizer (its tokenizer_config.json gives the template and bos/eos tokens)")
        ->capture_default_str();
    c_chat->add_option("--chat-template", chat_choice,
                       "auto (the tokenizer's own) | chatml | hh | llama3 | mistral | FILE.jinja")
        ->capture_default_str();
    c_chat->add_option("--in", chat_in, "input file (default: stdin)");
    c_chat->add_option("--out", chat_out, "output file (default: stdout)");

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }

    auto finalize = [](CommonFlags& f) {
      f.o.format = rlhf::parse_source_format(f.format);
      f.o.over_length = rlhf::parse_over_length(f.over_length);
      const bool conversational = f.o.format == rlhf::SourceFormat::Messages ||
                                  f.o.format == rlhf::SourceFormat::OasstTree;
      if (conversational && f.o.chat_template.empty()) f.o.chat_template = "auto";
      return f.o;
    };
    if (c_sft->parsed()) rlhf::run_prep_sft(finalize(sft));
    else if (c_ranked->parsed()) rlhf::run_prep_ranked(finalize(ranked));
    else if (c_prompts->parsed()) rlhf::run_prep_prompts(finalize(prompts));
    else if (c_pretrain->parsed()) rlhf::run_prep_pretrain(finalize(pretrain));
    else if (c_synth->parsed()) rlhf::write_synth_task(synth_dir, synth_seed, sizes);
    else if (c_inspect->parsed()) rlhf::run_prep_inspect(inspect_file, std::cout, inspect_rows);
    else if (c_encode->parsed() || c_decode->parsed() || c_chat->parsed()) {
      const bool is_enc = c_encode->parsed(), is_chat = c_chat->parsed();
      const std::string& in_path = is_chat ? chat_in : is_enc ? enc_in : dec_in;
      const std::string& out_path = is_chat ? chat_out : is_enc ? enc_out : dec_out;
      std::ifstream fin;
      std::ofstream fout;
      if (!in_path.empty()) {
        fin.open(in_path, std::ios::binary);
        RLHF_CHECK(fin.good(), "rlhf_prep: cannot open '{}'", in_path);
      }
      if (!out_path.empty()) {
        fout.open(out_path, std::ios::binary);
        RLHF_CHECK(fout.good(), "rlhf_prep: cannot create '{}'", out_path);
      }
      std::istream& in = in_path.empty() ? std::cin : fin;
      std::ostream& out = out_path.empty() ? std::cout : fout;
      if (is_chat) return rlhf::run_chat_template(chat_tok, chat_choice, in, out);
      return is_enc ? rlhf::run_encode(enc, in, out) : rlhf::run_decode(dec_tok, in, out);
    }
    return 0;
  });
}
