// chat_template.cpp — see chat_template.h.
#include "common/chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/chat/jinja_eval.h"
#include "common/core/check.h"
#include "common/core/fs.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// The built-ins, as Jinja text of our own (their outputs: test_chat_template.cpp BuiltinsDocumentedOutputs).
const std::map<std::string, std::string>& builtins() {
  static const std::map<std::string, std::string> t = {
      {"chatml",
       "{%- for message in messages %}"
       "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
       "{%- endfor %}"
       "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"},
      {"llama3",
       "{{- bos_token }}"
       "{%- for message in messages %}"
       "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
       "message['content'] | trim + '<|eot_id|>' }}"
       "{%- endfor %}"
       "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
       "{%- endif %}"},
      {"mistral",
       "{%- if messages and messages[0]['role'] == 'system' %}"
       "{%- set system = messages[0]['content'] + '\\n\\n' %}{%- set loop_messages = messages[1:] %}"
       "{%- else %}{%- set system = '' %}{%- set loop_messages = messages %}{%- endif %}"
       "{{- bos_token }}"
       "{%- for message in loop_messages %}"
       "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
       "{{- raise_exception('mistral template: roles must alternate user/assistant/user/...') }}"
       "{%- endif %}"
       "{%- if message['role'] == 'user' %}"
       "{{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
       "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
       "{%- else %}{{- raise_exception('mistral template: unknown role ' + message['role']) }}"
       "{%- endif %}"
       "{%- endfor %}"},
      {"hh",
       "{%- for message in messages %}"
       "{%- if message['role'] == 'user' %}{{- '\\n\\nHuman: ' + message['content'] }}"
       "{%- elif message['role'] == 'assistant' %}{{- '\\n\\nAssistant: ' + message['content'] }}"
       "{%- elif message['role'] == 'system' %}{{- message['content'] }}"
       "{%- else %}{{- raise_exception('hh template: unknown role ' + message['role']) }}"
       "{%- endif %}"
       "{%- endfor %}"
       "{%- if add_generation_prompt %}{{- '\\n\\nAssistant:' }}{%- endif %}"},
  };
  return t;
}

std::string token_string(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

std::vector<std::string> builtin_chat_template_names() {
  std::vector<std::string> names;
  for (const auto& kv : builtins()) names.push_back(kv.first);
  return names;
}

const std::string& builtin_chat_template(const std::string& name) {
  auto it = builtins().find(name);
  RLHF_CHECK(it != builtins().end(), "unknown chat template '{}': built-in names are {}", name,
             fmt::join(builtin_chat_template_names(), ", "));
  return it->second;
}

TokenizerChatConfig read_tokenizer_chat_config(const std::string& spec) {
  TokenizerChatConfig c;
  if (spec.empty() || spec == "byte") return c;
  const fs::path p(spec);
  const fs::path cfg = (fs::is_directory(p) ? p : p.parent_path()) / "tokenizer_config.json";
  if (!fs::exists(cfg)) return c;
  c.path = cfg.string();
  ojson j;
  try {
    j = ojson::parse(read_file_bytes(c.path));
  } catch (const ojson::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", c.path, e.what()));
  }
  RLHF_CHECK(j.is_object(), "{}: expected a JSON object", c.path);
  for (const char* k : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
    if (j.contains(k) && !token_string(j[k]).empty()) c.special_tokens[k] = token_string(j[k]);
  if (!j.contains("chat_template") || j["chat_template"].is_null()) return c;
  const ojson& t = j["chat_template"];
  if (t.is_string()) {
    c.chat_template = t.get<std::string>();
    return c;
  }
  RLHF_CHECK(t.is_array(), "{}: chat_template must be a string or a list of {{name, template}}", c.path);
  for (const auto& e : t)
    if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
      c.chat_template = e["template"].get<std::string>();
  RLHF_CHECK(!c.chat_template.empty(), "{}: chat_template list has no template named \"default\"", c.path);
  return c;
}

ChatTemplate::ChatTemplate(std::string name, std::string source, ojson special_tokens)
    : name_(std::move(name)), source_(std::move(source)), special_tokens_(std::move(special_tokens)),
      tpl_(std::make_shared<jinja::Template>(name_, source_)) {}

ChatTemplate ChatTemplate::select(const std::string& choice, const std::string& tokenizer_spec) {
  const TokenizerChatConfig cfg = read_tokenizer_chat_config(tokenizer_spec);
  if (choice == "auto" || choice.empty()) {
    RLHF_CHECK(!cfg.chat_template.empty(),
               "tokenizer '{}' has no chat_template{}: choose one with --chat-template NAME ({}) or "
               "FILE.jinja",
               tokenizer_spec, cfg.path.empty() ? " (no tokenizer_config.json)" : " in " + cfg.path,
               fmt::join(builtin_chat_template_names(), ", "));
    return ChatTemplate(cfg.path + ":chat_template", cfg.chat_template, cfg.special_tokens);
  }
  if (builtins().count(choice)) return ChatTemplate(choice, builtins().at(choice), cfg.special_tokens);
  const bool jinja_ext = choice.size() > 6 && choice.compare(choice.size() - 6, 6, ".jinja") == 0;
  RLHF_CHECK(jinja_ext || fs::is_regular_file(choice),
             "unknown chat template '{}': use auto, a built-in name ({}) or a FILE.jinja", choice,
             fmt::join(builtin_chat_template_names(), ", "));
  return ChatTemplate(choice, read_file_bytes(choice), cfg.special_tokens);
}

ChatTemplate ChatTemplate::with_tokenizer(const std::string& name, const std::string& source,
                                          const std::string& tokenizer_spec) {
  return ChatTemplate(name, source, read_tokenizer_chat_config(tokenizer_spec).special_tokens);
}

std::string ChatTemplate::render(const ojson& messages, bool add_generation_prompt, const ojson& extra) const {
  RLHF_CHECK(messages.is_array(), "chat template '{}': messages must be a list, got {}", name_, messages.type_name());
  for (size_t k = 0; k < messages.size(); ++k)
    RLHF_CHECK(messages[k].is_object(), "chat template '{}': message {} must be an object, got {}", name_, k,
               messages[k].type_name());
  jinja::Dict vars;
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it)
    vars.emplace_back(it.key(), jinja::from_json(it.value()));
  auto put = [&](const std::string& k, jinja::Value v) {
    for (auto& kv : vars)
      if (kv.first == k) { kv.second = std::move(v); return; }
    vars.emplace_back(k, std::move(v));
  };
  put("tools", jinja::Value::none());
  put("documents", jinja::Value::none());
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) put(it.key(), jinja::from_json(it.value()));
  put("messages", jinja::from_json(messages));
  put("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
  return tpl_->render(vars);
}

std::string ChatTemplate::render_object(const ojson& input) const {
  RLHF_CHECK(input.is_object() && input.contains("messages"),
             "chat template input must be an object with \"messages\", got {}", input.type_name());
  const ojson& gen = input.contains("add_generation_prompt") ? input["add_generation_prompt"] : ojson(false);
  RLHF_CHECK(gen.is_boolean(), "\"add_generation_prompt\" must be true or false, got {}", gen.type_name());
  ojson extra = ojson::object();
  for (auto it = input.begin(); it != input.end(); ++it)
    if (it.key() != "messages" && it.key() != "add_generation_prompt") extra[it.key()] = it.value();
  return render(input["messages"], gen.get<bool>(), extra);
}

}  // namespace rlhf
