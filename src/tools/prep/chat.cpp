// chat.cpp — see chat.h.
#include "tools/prep/chat.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/chat/chat_template.h"
#include "common/core/check.h"

namespace rlhf {

int run_chat_template(const std::string& tokenizer_spec, const std::string& choice, std::istream& in,
                      std::ostream& out) {
  const ChatTemplate tpl = ChatTemplate::select(choice, tokenizer_spec);
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("chat-template: input line {} is not valid JSON: {}", line_no, e.what()));
    }
    std::string text;
    try {
      text = tpl.render_object(j);
    } catch (const Error& e) {
      throw Error(fmt::format("chat-template: input line {}: {}", line_no, e.what()));
    }
    out << nlohmann::json{{"text", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << '\n';
  }
  RLHF_CHECK(!in.bad(), "chat-template: error reading the input");
  out.flush();
  return 0;
}

}  // namespace rlhf
