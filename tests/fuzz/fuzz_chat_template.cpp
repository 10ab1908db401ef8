// Fuzzes the chat-template engine (Jinja subset: lexer, parser, evaluator, built-ins): the input
// is a template, rendered for a fixed multi-turn conversation with and without the generation
// prompt. Lines after a line "#MESSAGES" are a JSON conversation to render instead.
#include <nlohmann/json.hpp>

#include "common/chat/chat_template.h"
#include "fuzz_util.h"

using namespace rlhf;
using json = nlohmann::ordered_json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  json messages = json::array({{{"role", "system"}, {"content", "Be brief."}},
                               {{"role", "user"}, {"content", "Hi"}},
                               {{"role", "assistant"}, {"content", "Hello!"}},
                               {{"role", "user"}, {"content", "2+2?"}}});
  const size_t mark = source.find("\n#MESSAGES\n");
  if (mark != std::string::npos) {
    json m = json::parse(source.substr(mark + 11), nullptr, false);
    if (!m.is_discarded()) messages = m;
    source.resize(mark);
  }
  const json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  fuzz::expect_clean([&] {
    ChatTemplate t("fuzz.jinja", source, special);
    fuzz::expect_clean([&] { t.render(messages, false); });
    fuzz::expect_clean([&] { t.render(messages, true); });
  });
  return 0;
}
