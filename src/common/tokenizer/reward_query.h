// reward_query.h — the text interface of a reward model (ppo.reward: remote, rlhf_serve rm): how
// a scored sequence becomes one query string and back. Both ends use this one rule, so a policy's
// sequence sent as text is scored on the ids a local reward model would see (ppo.reward: rm),
// whenever its text re-encodes to the same ids (always for the byte tokenizer; for BPE kinds when
// the sampled tokens are the canonical encoding of their text, as with any text-based reward).
//
// The framing is the one the reward model's rows were trained with (data/batch.h SpecialIds):
// plain rows are BOS + text + EOS (the trainer adds both), chat rows carry every special token
// in their template's text (no framing: bos = eos = -1).
//
//   eos        = whether the ids end with the framing EOS (the response ended; else truncated)
//   query text = decode_with_special_tokens(ids without that EOS), with the BOS in place (it
//                decodes to its text where it has one, to nothing for byte/gpt2/llama2c: llama2c's
//                decode drops the first piece's space only after a BOS) — or, when that text does
//                not re-encode to ids, without the BOS (a Metaspace tokenizer such as Mistral's
//                prepends "▁" to the text after a written "<s>")
//
// and back: ids = [BOS] + encode(text) + [EOS if eos], where BOS is added unless the text's ids
// already start with it and EOS unless they already end with it (so a client that writes the
// EOS as text, e.g. "<|endoftext|>", gets the same ids). A query without "eos" counts as ended
// (eos = true): OpenRLHF's reward server appends the EOS to every query too.
//
// RewardQuery::exact says whether the round trip holds for this row (text valid UTF-8, so JSON
// carries it unchanged, and re-encoding to exactly ids). It fails for invalid UTF-8 (a byte-level
// policy can sample any bytes: JSON replaces them with U+FFFD) and for sampled tokens that are
// not the canonical encoding of their text; the server then scores the re-encoded text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf {

class Tokenizer;

struct QueryFraming {
  int32_t bos = -1;  // added before plain rows (-1: none, e.g. chat rows or Qwen)
  int32_t eos = -1;  // added after plain rows (-1: none)
};

struct RewardQuery {
  std::string text;
  bool eos = false;    // the sequence ended with the framing EOS (not sent as text)
  bool exact = false;  // client side: text and eos give back exactly the ids (see above)
};

// The framing of rows framed with these ids (data/batch.h SpecialIds: bos, eos, add_eos).
inline QueryFraming query_framing(int64_t bos, int64_t eos, bool add_eos) {
  return {static_cast<int32_t>(bos), add_eos ? static_cast<int32_t>(eos) : -1};
}

// Client side: the unpadded ids a reward model would score → the query.
RewardQuery reward_query(const Tokenizer& tok, const QueryFraming& f, const std::vector<int32_t>& ids);

// Server side: a query → the ids to score (the rule above).
std::vector<int32_t> reward_query_ids(const Tokenizer& tok, const QueryFraming& f, const std::string& text,
                                      bool eos);

}  // namespace rlhf
