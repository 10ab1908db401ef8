// chat_template.h — a conversation ({"role", "content"} messages) rendered to the text a chat
// model was trained on, by a Jinja chat template (jinja_eval.h) exactly as Hugging Face's
// apply_chat_template(..., tokenize=False) renders it: variables messages,
// add_generation_prompt, tools = none, documents = none, the tokenizer's named special tokens
// (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token, those that
// tokenizer_config.json sets), and extra keyword variables (e.g. enable_thinking).
// Templates come from `choice` (select()): "auto" = the tokenizer's own chat_template from
// tokenizer_config.json beside the tokenizer (a string, or the list-of-{name, template} form,
// where "default" is used); a built-in name (chatml, hh, llama3, mistral; their Jinja text is in
// chat_template.cpp; their layouts in docs/DATA.md); or a FILE.jinja. Anything else, or "auto"
// for a tokenizer without a template, is an rlhf::Error listing the built-in names.
// Errors: template syntax / unsupported constructs at construction, rendering errors and
// raise_exception at render(), all rlhf::Error naming the template, line and column; messages
// that are not a list of objects -> rlhf::Error. A ChatTemplate is immutable and thread-safe.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlhf {

namespace jinja { class Template; }

std::vector<std::string> builtin_chat_template_names();  // chatml, hh, llama3, mistral
// The Jinja text of a built-in template; throws rlhf::Error listing the names when unknown.
const std::string& builtin_chat_template(const std::string& name);

// What tokenizer_config.json beside a tokenizer spec (a folder, or a file in it) says:
// chat_template ("" when none) and the named special tokens as strings ({} when no config).
struct TokenizerChatConfig {
  std::string path;           // the tokenizer_config.json read ("" when none)
  std::string chat_template;  // the template text ("" when none)
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};
TokenizerChatConfig read_tokenizer_chat_config(const std::string& tokenizer_spec);

class ChatTemplate {
 public:
  // name labels errors (a built-in name, a file path or "<config>:chat_template").
  ChatTemplate(std::string name, std::string source,
               nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object());
  // choice: "auto" | NAME | FILE.jinja (see above); special tokens always from the tokenizer.
  static ChatTemplate select(const std::string& choice, const std::string& tokenizer_spec);
  // A template text (e.g. one stored in a checkpoint) with the tokenizer's special tokens.
  static ChatTemplate with_tokenizer(const std::string& name, const std::string& source,
                                     const std::string& tokenizer_spec);

  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // {"messages": [...], "add_generation_prompt": bool (default false), other variables...}.
  std::string render_object(const nlohmann::ordered_json& input) const;

  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }

 private:
  std::string name_, source_;
  nlohmann::ordered_json special_tokens_;
  std::shared_ptr<const jinja::Template> tpl_;
};

}  // namespace rlhf
