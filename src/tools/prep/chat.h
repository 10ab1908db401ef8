// chat.h — `rlhf_prep chat-template`: one JSON object {"messages": [...],
// "add_generation_prompt": bool, ...other template variables} per input line -> one
// {"text": ...} per output line, rendered by the chosen chat template (common/chat). For
// checking a template by hand and for the comparison with Hugging Face (test_chat_hf.sh).
// Errors: rlhf::Error naming the input line (bad JSON, bad messages, a template error).
#pragma once
#include <istream>
#include <ostream>
#include <string>

namespace rlhf {

// choice: auto | NAME | FILE.jinja (ChatTemplate::select).
int run_chat_template(const std::string& tokenizer_spec, const std::string& choice, std::istream& in,
                      std::ostream& out);

}  // namespace rlhf
