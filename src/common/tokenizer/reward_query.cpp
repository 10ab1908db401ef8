// reward_query.cpp — see reward_query.h.
#include "common/tokenizer/reward_query.h"

#include "common/tokenizer/text.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

namespace {

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();)
    if (text::next_codepoint(s, i) == text::kInvalid) return false;
  return true;
}

}  // namespace

RewardQuery reward_query(const Tokenizer& tok, const QueryFraming& f, const std::vector<int32_t>& ids) {
  RewardQuery q;
  std::vector<int32_t> body = ids;
  const bool has_bos = f.bos >= 0 && !body.empty() && body.front() == f.bos;
  if (f.eos >= 0 && body.size() > (has_bos ? 1u : 0u) && body.back() == f.eos) {
    body.pop_back();
    q.eos = true;
  }
  // The first candidate text that re-encodes to ids (see the header): with the BOS in place, then
  // without it.
  std::vector<std::string> candidates = {tok.decode_with_special_tokens(body)};
  if (has_bos) candidates.push_back(tok.decode_with_special_tokens(std::vector<int32_t>(body.begin() + 1, body.end())));
  for (const std::string& t : candidates)
    if (valid_utf8(t) && reward_query_ids(tok, f, t, q.eos) == ids) {
      q.text = t;
      q.exact = true;
      return q;
    }
  q.text = candidates.front();
  return q;
}

std::vector<int32_t> reward_query_ids(const Tokenizer& tok, const QueryFraming& f, const std::string& text,
                                      bool eos) {
  std::vector<int32_t> ids = tok.encode(text);
  if (f.bos >= 0 && (ids.empty() || ids.front() != f.bos)) ids.insert(ids.begin(), f.bos);
  if (eos && f.eos >= 0 && (ids.empty() || ids.back() != f.eos)) ids.push_back(f.eos);
  return ids;
}

}  // namespace rlhf
