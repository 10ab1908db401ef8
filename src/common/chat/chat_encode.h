// chat_encode.h — conversations to token rows through a chat template, with the assistant turns
// marked as loss targets (docs/DATA.md, "Conversations").
//
// How the targets are found: a conversation is rendered whole, and for every assistant message i
// also as pre_i = render(messages[:i], add_generation_prompt = true) and post_i =
// render(messages[:i+1]). Each must be a prefix of the whole (and pre_i of post_i); otherwise the
// template is not prefix-stable for this conversation (Qwen3's own template drops earlier
// turns' reasoning, for example) and the row is refused with an error saying so. The text
// [pre_i, post_i) is assistant turn i: its target part runs through the template's end-of-turn
// text; what follows (e.g. chatml's "\n") is not a target. The text is encoded piece by piece at
// these boundaries with Tokenizer::encode (special-token text such as "<|im_end|>" becomes its
// id; the template writes BOS itself when it has one), so a target never shares a token with a
// non-target.
//
// End of turn: found once per template by rendering a probe conversation; the non-blank text
// after the assistant's content (chatml "<|im_end|>", llama3 "<|eot_id|>", mistral "</s>"). When
// it is one token of the tokenizer, that id ends turns (end_of_turn()); when there is none (hh)
// or it is several tokens, end_of_turn() is -1 and the tokenizer's EOS id is inserted after every
// assistant turn (as a target), so a model still learns to stop and generation stops on EOS.
//
// Errors: a conversation the encoder refuses throws ChatRowError, whose reason names the kind
// (bad_messages, template_error — incl. raise_exception —, not_prefix_stable, no_assistant_turn,
// prompt_ends_with_assistant) and whose message the problem; callers add file and row.
// Thread-safe (const).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/chat/chat_template.h"
#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

struct ChatRowError : Error {
  ChatRowError(std::string why, const std::string& message) : Error(message), reason(std::move(why)) {}
  std::string reason;
};

// Checks that messages is a non-empty list of {"role": string, "content": string} objects
// (other keys allowed); throws rlhf::Error naming the first bad message.
void check_messages(const nlohmann::ordered_json& messages);

class ChatEncoder {
 public:
  // Both must outlive the encoder. Throws if the probe conversation cannot be rendered.
  ChatEncoder(const ChatTemplate& tpl, const Tokenizer& tok);

  int32_t end_of_turn() const { return end_of_turn_; }        // -1: EOS follows each turn
  const std::string& end_of_turn_text() const { return eot_text_; }  // "" when none

  // A conversation (no generation prompt): ids, and the target spans [begin, end) in ids —
  // one per assistant turn, increasing. At least one assistant turn is required.
  struct Encoded {
    std::vector<int32_t> ids;
    std::vector<int32_t> spans;  // pairs
  };
  Encoded encode_conversation(const nlohmann::ordered_json& messages) const;

  // The prompt a model answers: messages (last one not from the assistant) rendered with the
  // generation prompt.
  std::vector<int32_t> encode_prompt(const nlohmann::ordered_json& messages) const;

  // prompt messages + reply messages (>= 1 assistant turn) -> the prompt's ids (= encode_prompt
  // of the prompt when the reply starts with the assistant) and the reply's ids through the end
  // of its last assistant turn (its end of turn included, nothing after it).
  std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_reply(
      const nlohmann::ordered_json& prompt, const nlohmann::ordered_json& reply) const;

 private:
  struct Piece {
    std::string text;
    bool target;
  };
  // The whole rendering cut into pieces at the assistant turns' boundaries.
  std::vector<Piece> pieces(const nlohmann::ordered_json& messages, bool add_generation_prompt) const;
  Encoded encode_pieces(const std::vector<Piece>& ps) const;
  static void check(const nlohmann::ordered_json& messages);  // check_messages as bad_messages

  const ChatTemplate& tpl_;
  const Tokenizer& tok_;
  int32_t end_of_turn_ = -1;
  std::string eot_text_;
};

}  // namespace rlhf
