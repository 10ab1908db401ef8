// Fuzzes rlhf_prep's source readers on one input file: the JSONL row reader (sft, ranked, prompt
// rows in every field layout), conversations (`messages`), Open Assistant trees, hh-rlhf
// transcripts, the gzip reader (inputs starting with 1f 8b), and the chatml rendering of every
// conversation that was accepted.
#include <nlohmann/json.hpp>

#include "common/chat/chat_template.h"
#include "tools/prep/sources.h"
#include "fuzz_util.h"

using namespace rlhf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ChatTemplate chatml = ChatTemplate::select("chatml", "byte");
  const std::string path = fuzz::write_scratch("rows.jsonl", data, size);
  PrepOptions o;
  o.inputs = {path};
  for (SourceFormat f : {SourceFormat::Jsonl, SourceFormat::HhRlhf}) {
    o.format = f;
    o.chat_template.clear();
    PrepReport rep(false);
    fuzz::expect_clean([&] { read_sft_rows(o, rep); });
    fuzz::expect_clean([&] { read_ranked_rows(o, rep); });
    fuzz::expect_clean([&] { read_prompt_rows(o, rep, nullptr); });
  }
  for (SourceFormat f : {SourceFormat::Messages, SourceFormat::OasstTree, SourceFormat::Jsonl}) {
    o.format = f;
    o.chat_template = "chatml";
    PrepReport rep(false);
    fuzz::expect_clean([&] {
      for (const auto& row : read_chat_sft_rows(o, rep))
        fuzz::expect_clean([&] { chatml.render(row.messages, false); });
    });
    fuzz::expect_clean([&] {
      for (const auto& g : read_chat_ranked_rows(o, rep))
        fuzz::expect_clean([&] { chatml.render(g.prompt, true); });
    });
    fuzz::expect_clean([&] { read_chat_prompt_rows(o, rep); });
  }
  PrepReport strict(true);
  o.format = SourceFormat::Jsonl;
  o.chat_template.clear();
  fuzz::expect_clean([&] { read_sft_rows(o, strict); });
  return 0;
}
