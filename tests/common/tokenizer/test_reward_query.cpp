// test_reward_query.cpp — the text interface of a reward model (common/tokenizer/reward_query.h):
// a framed sequence → query text + eos → the same ids, for the byte tokenizer (the embedded task)
// and a real tokenizer with added special tokens (Llama 3), including a client that writes the
// BOS and EOS as text (OpenRLHF's) and one that sends no "eos" (counted as ended).
#include <gtest/gtest.h>

#include "common/tokenizer/reward_query.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

const std::string kTokDir = RLHF_SOURCE_DIR "/../shared/data/tokenizers";

std::vector<int32_t> ids_of(const std::string& s) {  // byte tokenizer ids: the bytes
  return std::vector<int32_t>(s.begin(), s.end());
}

TEST(RewardQuery, ByteTokenizerPlainRowsRoundTrip) {
  ByteTokenizer tok;
  const QueryFraming f{256, 257};  // BOS, EOS
  std::vector<int32_t> ended = {256};
  for (int32_t c : ids_of("2+3=5")) ended.push_back(c);
  ended.push_back(257);
  const RewardQuery q = reward_query(tok, f, ended);
  EXPECT_EQ(q.text, "2+3=5");
  EXPECT_TRUE(q.eos);
  EXPECT_EQ(reward_query_ids(tok, f, q.text, q.eos), ended);
  // Truncated (no EOS): scored at its last token, as ppo.reward: rm scores it.
  std::vector<int32_t> cut(ended.begin(), ended.end() - 1);
  const RewardQuery c = reward_query(tok, f, cut);
  EXPECT_EQ(c.text, "2+3=5");
  EXPECT_FALSE(c.eos);
  EXPECT_EQ(reward_query_ids(tok, f, c.text, c.eos), cut);
  // Empty text: BOS (+ EOS); no framing: the text alone.
  EXPECT_EQ(reward_query_ids(tok, f, "", true), (std::vector<int32_t>{256, 257}));
  EXPECT_EQ(reward_query_ids(tok, QueryFraming{}, "ab", true), ids_of("ab"));
  EXPECT_EQ(reward_query(tok, QueryFraming{}, ids_of("ab")).eos, false);
  EXPECT_TRUE(q.exact);
  // A sampled byte that is not UTF-8: JSON would replace it, so the row is flagged.
  const RewardQuery raw = reward_query(tok, f, {256, 'a', 0xff, 257});
  EXPECT_FALSE(raw.exact);
  EXPECT_TRUE(raw.eos);
}

TEST(RewardQuery, AddedTokensAsTextAreNotFramedTwice) {
  auto tok = load_tokenizer(kTokDir + "/llama3");
  const int32_t bos = tok->bos_id(), eos = tok->eos_id();
  ASSERT_GE(bos, 0);
  const QueryFraming f{bos, eos};
  std::vector<int32_t> ids = {bos};
  for (int32_t t : tok->encode("Question: two plus three? Answer: five")) ids.push_back(t);
  ids.push_back(eos);
  const RewardQuery q = reward_query(*tok, f, ids);
  EXPECT_EQ(q.text, "<|begin_of_text|>Question: two plus three? Answer: five");  // BOS as its text
  EXPECT_TRUE(q.eos);
  EXPECT_EQ(reward_query_ids(*tok, f, q.text, q.eos), ids);
  // A client that writes BOS and EOS as text (decode with special tokens, as OpenRLHF's does):
  // the same ids, whatever its eos flag says.
  const std::string written = tok->decode_with_special_tokens(ids);
  EXPECT_NE(written.find(tok->decode_with_special_tokens({eos})), std::string::npos) << written;
  EXPECT_EQ(reward_query_ids(*tok, f, written, true), ids);
  EXPECT_EQ(reward_query_ids(*tok, f, written, false), ids);
  // A stop token other than the framing EOS (of <|eot_id|> and <|end_of_text|>, the one that is
  // not this tokenizer's EOS) stays in the text.
  const int32_t eot = tok->token_id(tok->token_id("<|eot_id|>") == eos ? "<|end_of_text|>" : "<|eot_id|>");
  ASSERT_GE(eot, 0);
  ASSERT_NE(eot, eos);
  std::vector<int32_t> chatty(ids.begin(), ids.end() - 1);
  chatty.push_back(eot);
  const RewardQuery e = reward_query(*tok, f, chatty);
  EXPECT_FALSE(e.eos);
  EXPECT_EQ(reward_query_ids(*tok, f, e.text, e.eos), chatty);
}

// The round trip ids -> query -> ids for every tokenizer kind with real files here: llama2c
// (whose decode drops the first piece's space only after BOS, and whose encode adds it back),
// Qwen3 (no BOS), Mistral; each with and without the final EOS.
TEST(RewardQuery, RoundTripEveryTokenizerKind) {
  const std::string data = RLHF_SOURCE_DIR "/../shared/data";
  for (const std::string spec : {data + "/stories260K/tok512.bin", kTokDir + "/qwen3", kTokDir + "/mistral",
                                 kTokDir + "/llama3", std::string("byte")}) {
    auto tok = load_tokenizer(spec);
    const QueryFraming f{tok->bos_id(), tok->eos_id()};
    for (const std::string text : {"Once upon a time, Lily saw a cat.", " two  spaces", "x"}) {
      std::vector<int32_t> ids;
      if (f.bos >= 0) ids.push_back(f.bos);
      for (int32_t t : tok->encode(text)) ids.push_back(t);
      for (bool ended : {false, true}) {
        std::vector<int32_t> seq = ids;
        if (ended) seq.push_back(f.eos);
        const RewardQuery q = reward_query(*tok, f, seq);
        EXPECT_EQ(q.eos, ended) << spec;
        EXPECT_TRUE(q.exact) << spec << " '" << text << "' -> '" << q.text << "'";
        EXPECT_EQ(reward_query_ids(*tok, f, q.text, q.eos), seq) << spec << " '" << text << "' -> '" << q.text << "'";
      }
    }
  }
}

}  // namespace
}  // namespace rlhf
