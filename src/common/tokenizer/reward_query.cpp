// reward_query.cpp — see reward_query.h.
#include "common/tokenizer/reward_query.h"

#include "common/tokenizer/tokenizer.h"

namespace rlhf {

RewardQuery reward_query(const Tokenizer& tok, const QueryFraming& f, std::vector<int32_t> ids) {
  RewardQuery q;
  if (f.bos >= 0 && !ids.empty() && ids.front() == f.bos) ids.erase(ids.begin());
  if (f.eos >= 0 && !ids.empty() && ids.back() == f.eos) {
    ids.pop_back();
    q.eos = true;
  }
  q.text = tok.decode_with_special_tokens(ids);
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
