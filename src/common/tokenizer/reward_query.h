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
//   query text = decode_with_special_tokens(ids without the framing BOS and the final framing EOS)
//   eos        = whether that final framing EOS was there (the response ended; else truncated)
//
// and back: ids = [BOS] + encode(text) + [EOS if eos], where BOS is added unless the text's ids
// already start with it and EOS unless they already end with it (so a client that writes the
// EOS as text, e.g. "<|endoftext|>", gets the same ids). A query without "eos" counts as ended
// (eos = true): OpenRLHF's reward server appends the EOS to every query too.
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
  bool eos = false;  // the sequence ended with the framing EOS (not sent as text)
};

// Client side: the unpadded ids a reward model would score → the query.
RewardQuery reward_query(const Tokenizer& tok, const QueryFraming& f, std::vector<int32_t> ids);

// Server side: a query → the ids to score (the rule above).
std::vector<int32_t> reward_query_ids(const Tokenizer& tok, const QueryFraming& f, const std::string& text,
                                      bool eos);

}  // namespace rlhf
