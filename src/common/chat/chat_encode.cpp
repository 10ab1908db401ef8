// chat_encode.cpp — see chat_encode.h.
#include "common/chat/chat_encode.h"

#include <fmt/format.h>

#include "common/core/check.h"

namespace rlhf {
namespace {

using ojson = nlohmann::ordered_json;

const char* const kProbeReply = "rlhf-probe-reply-7c1e";

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

ojson head(const ojson& messages, size_t n) {
  ojson out = ojson::array();
  for (size_t i = 0; i < n; ++i) out.push_back(messages[i]);
  return out;
}

bool is_assistant(const ojson& m) { return m["role"].get<std::string>() == "assistant"; }

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Runs f; a plain rlhf::Error (the template's own, raise_exception) becomes a ChatRowError.
template <class F>
auto guarded(F f) -> decltype(f()) {
  try {
    return f();
  } catch (const ChatRowError&) {
    throw;
  } catch (const Error& e) {
    throw ChatRowError("template_error", e.what());
  }
}

[[noreturn]] void refuse(const char* reason, const std::string& message) { throw ChatRowError(reason, message); }

}  // namespace

void check_messages(const ojson& messages) {
  RLHF_CHECK(messages.is_array(), "messages must be a list of {{\"role\", \"content\"}} objects, got {}",
             messages.type_name());
  RLHF_CHECK(!messages.empty(), "messages is an empty list");
  for (size_t i = 0; i < messages.size(); ++i) {
    const ojson& m = messages[i];
    RLHF_CHECK(m.is_object(), "message {} is {}, expected an object {{\"role\", \"content\"}}", i,
               m.type_name());
    RLHF_CHECK(m.contains("role") && m["role"].is_string(), "message {} has no string \"role\"", i);
    RLHF_CHECK(m.contains("content") && m["content"].is_string(),
               "message {} ({}) has no string \"content\"", i, m["role"].get<std::string>());
  }
}

ChatEncoder::ChatEncoder(const ChatTemplate& tpl, const Tokenizer& tok) : tpl_(tpl), tok_(tok) {
  const ojson probe = ojson::array({{{"role", "user"}, {"content", "Hello"}},
                                    {{"role", "assistant"}, {"content", kProbeReply}}});
  std::string post;
  try {
    post = tpl_.render(probe, false);
  } catch (const Error& e) {
    throw Error(fmt::format("chat template '{}': cannot find its end of turn (rendering a user + "
                            "assistant conversation failed: {})", tpl_.name(), e.what()));
  }
  const size_t k = post.rfind(kProbeReply);
  RLHF_CHECK(k != std::string::npos,
             "chat template '{}' does not render an assistant message's content", tpl_.name());
  eot_text_ = trim(post.substr(k + std::string(kProbeReply).size()));
  if (eot_text_.empty()) return;
  const std::vector<int32_t> ids = tok_.encode(eot_text_);
  if (ids.size() == 1) end_of_turn_ = ids[0];
}

std::vector<ChatEncoder::Piece> ChatEncoder::pieces(const ojson& messages, bool add_generation_prompt) const {
  const std::string full = guarded([&] { return tpl_.render(messages, add_generation_prompt); });
  std::vector<Piece> out;
  size_t pos = 0;  // start of the text not yet cut into pieces
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!is_assistant(messages[i])) continue;
    const std::string pre = guarded([&] { return tpl_.render(head(messages, i), true); });
    const std::string post = guarded([&] { return tpl_.render(head(messages, i + 1), false); });
    if (!(starts_with(post, pre) && starts_with(full, post) && pre.size() >= pos))
      refuse("not_prefix_stable",
             fmt::format("chat template '{}' is not prefix-stable for this conversation: the "
                         "rendering of its first {} messages is not a prefix of the rendering of "
                         "all {} (loss on each assistant turn needs a template that renders a "
                         "conversation's beginning the same way, e.g. chatml)",
                         tpl_.name(), i + 1, messages.size()));
    const std::string turn = post.substr(pre.size());
    size_t cut = turn.size();
    if (!eot_text_.empty()) {
      const size_t e = turn.rfind(eot_text_);
      if (e != std::string::npos) cut = e + eot_text_.size();
    }
    out.push_back({full.substr(pos, pre.size() - pos), false});
    out.push_back({turn.substr(0, cut), true});
    pos = pre.size() + cut;
  }
  out.push_back({full.substr(pos), false});
  return out;
}

ChatEncoder::Encoded ChatEncoder::encode_pieces(const std::vector<Piece>& ps) const {
  Encoded e;
  for (const Piece& p : ps) {
    const auto begin = static_cast<int32_t>(e.ids.size());
    if (!p.text.empty()) {
      const std::vector<int32_t> ids = tok_.encode(p.text);
      e.ids.insert(e.ids.end(), ids.begin(), ids.end());
    }
    if (!p.target) continue;
    if (end_of_turn_ < 0) e.ids.push_back(tok_.eos_id());  // the turn ends with EOS
    const auto end = static_cast<int32_t>(e.ids.size());
    if (end > begin) e.spans.insert(e.spans.end(), {begin, end});
  }
  return e;
}

void ChatEncoder::check(const ojson& messages) {
  try {
    check_messages(messages);
  } catch (const Error& e) {
    refuse("bad_messages", e.what());
  }
}

ChatEncoder::Encoded ChatEncoder::encode_conversation(const ojson& messages) const {
  check(messages);
  Encoded e = encode_pieces(pieces(messages, false));
  if (e.spans.empty()) refuse("no_assistant_turn", "conversation has no assistant turn (nothing to learn)");
  return e;
}

std::vector<int32_t> ChatEncoder::encode_prompt(const ojson& messages) const {
  check(messages);
  if (is_assistant(messages.back()))
    refuse("prompt_ends_with_assistant",
           "a prompt must end with a user (or other non-assistant) turn, not the assistant's");
  return encode_pieces(pieces(messages, true)).ids;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> ChatEncoder::encode_reply(const ojson& prompt,
                                                                               const ojson& reply) const {
  check(prompt);
  check(reply);
  size_t turns = 0;
  for (const auto& m : reply) turns += is_assistant(m);
  if (turns == 0) refuse("no_assistant_turn", "a reply needs an assistant message");
  ojson all = prompt;
  for (const auto& m : reply) all.push_back(m);
  const Encoded e = encode_pieces(pieces(all, false));
  // The reply's assistant turns are the last `turns` spans (an empty one cannot occur: each
  // holds its content or end of turn, or the inserted EOS).
  if (e.spans.size() < 2 * turns) refuse("template_error", "the reply's assistant turns rendered no tokens");
  const int32_t begin = e.spans[e.spans.size() - 2 * turns], end = e.spans.back();
  return {std::vector<int32_t>(e.ids.begin(), e.ids.begin() + begin),
          std::vector<int32_t>(e.ids.begin() + begin, e.ids.begin() + end)};
}

}  // namespace rlhf
