// test_hf_tokenizer.cpp — the Hugging Face tokenizer.json kind: exact ids against the golden
// files made by a reference encoder (every line, three real tokenizers, with and without special
// tokens), decode round trips, each pipeline component against hand-computed pieces (the
// huggingface documentation's examples), added-token rules on a hand-built tokenizer, and the
// errors for unsupported input. (The 6,000-line comparison with the `tokenizers` package itself
// is tests/scripts/test_hf_tokenizers.sh; SentencePiece against spm_encode is
// tests/scripts/test_sentencepiece.sh.)
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/io/model_file.h"
#include "common/tokenizer/hf_components.h"
#include "common/tokenizer/text.h"
#include "common/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace {

using json = nlohmann::json;
using rlhf::testing::error_of;
using rlhf::testing::TempDir;
namespace hf = rlhf::hf;

const std::string kTokDir = RLHF_SOURCE_DIR "/../shared/data/tokenizers";

std::vector<std::pair<std::string, std::vector<int32_t>>> golden(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::vector<std::pair<std::string, std::vector<int32_t>>> out;
  for (std::string line; std::getline(f, line);) {
    const json j = json::parse(line);
    out.emplace_back(j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>());
  }
  return out;
}

class HfGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(HfGolden, IdsEqualReferenceOnEveryLine) {
  const std::string dir = kTokDir + "/" + GetParam();
  auto tok = rlhf::load_tokenizer(dir);
  ASSERT_EQ(tok->kind(), "hf");
  const auto plain = golden(dir + "/golden_ids.jsonl");
  const auto special = golden(dir + "/golden_ids_special.jsonl");
  ASSERT_EQ(plain.size(), 32u);
  ASSERT_EQ(special.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(tok->encode(plain[i].first), plain[i].second) << GetParam() << " line " << i + 1;
    EXPECT_EQ(tok->encode_with_special_tokens(special[i].first), special[i].second)
        << GetParam() << " special line " << i + 1;
  }
}

TEST_P(HfGolden, DecodeOfEncodeIsTheNormalisedText) {
  const std::string name = GetParam();
  auto tok = rlhf::load_tokenizer(kTokDir + "/" + name);
  int checked = 0;
  for (const auto& [text, ids] : golden(kTokDir + "/" + name + "/golden_ids.jsonl")) {
    if (text.find("<|") != std::string::npos || text.find("<s>") != std::string::npos ||
        text.find("</s>") != std::string::npos)
      continue;  // special tokens written in the text are dropped by decode
    const std::string want =
        name == "qwen3" ? rlhf::text::normalize(text, rlhf::text::NormalForm::NFC) : text;
    EXPECT_EQ(tok->decode(tok->encode(text)), want) << name << ": " << text;
    ++checked;
  }
  EXPECT_GE(checked, 25);
}

INSTANTIATE_TEST_SUITE_P(Real, HfGolden, ::testing::Values("qwen3", "llama3", "mistral"));

TEST(HfTokenizer, SpecialTokensAndStopIdsFromTheConfigFiles) {
  auto qwen = rlhf::load_tokenizer(kTokDir + "/qwen3");
  EXPECT_EQ(qwen->bos_id(), -1);  // Qwen has no BOS
  EXPECT_EQ(qwen->eos_id(), qwen->token_id("<|im_end|>"));
  EXPECT_EQ(qwen->eos_id(), 151645);
  EXPECT_EQ(qwen->pad_id(), 151643);  // <|endoftext|>
  EXPECT_EQ(qwen->vocab_size(), 151669);
  auto llama = rlhf::load_tokenizer(kTokDir + "/llama3/tokenizer.json");  // the file form
  EXPECT_EQ(llama->bos_id(), 128000);
  EXPECT_EQ(llama->eos_id(), 128009);  // <|eot_id|>
  EXPECT_EQ(llama->pad_id(), 128009);  // no pad_token: EOS (documented choice)
  EXPECT_EQ(llama->vocab_size(), 128256);
  auto mistral = rlhf::load_tokenizer(kTokDir + "/mistral");
  EXPECT_EQ(mistral->bos_id(), 1);
  EXPECT_EQ(mistral->eos_id(), 2);
  EXPECT_EQ(mistral->decode({1, 22557, 2}), mistral->decode({22557}));  // specials dropped

  // generation_config.json's eos_token_id list adds stop ids; the files travel with the model.
  TempDir d("hf_gen");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(kTokDir + "/llama3/" + f, d.path / f);
  std::ofstream(d.path / "generation_config.json") << R"({"eos_token_id": [128001, 128008, 128009]})";
  auto with_gen = rlhf::load_tokenizer(d.path.string());
  EXPECT_EQ(with_gen->stop_ids(), (std::vector<int32_t>{128009, 128001, 128008}));
  EXPECT_EQ(with_gen->files().size(), 3u);
  EXPECT_EQ(with_gen->identity(), llama->identity());  // same vocabulary and specials
  std::ofstream(d.path / "generation_config.json") << R"({"eos_token_id": 999999})";
  const std::string e = error_of([&] { rlhf::load_tokenizer(d.path.string()); });
  EXPECT_NE(e.find("generation_config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("999999"), std::string::npos) << e;
}

// ---- components, against the huggingface documentation's examples --------------------------

std::vector<std::string> pre_tokenize(const json& j, const std::string& text, bool at_start = true) {
  const hf::PreTokenizer p = hf::parse_pre_tokenizer(j, {"t.json", "pre_tokenizer"});
  std::vector<hf::Piece> pieces{{text, at_start}};
  p.apply(pieces);
  std::vector<std::string> out;
  for (const auto& x : pieces) out.push_back(x.text);
  return out;
}
using V = std::vector<std::string>;

TEST(HfComponents, SplitBehaviors) {
  auto split = [](const char* behavior, bool invert = false) {
    return pre_tokenize({{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior},
                         {"invert", invert}},
                        "the-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split("Removed", true), (V{"-", "-", "-"}));
  EXPECT_EQ(pre_tokenize({{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}},
                          {"behavior", "Removed"}, {"invert", false}},
                         "a \t b\u3000c"),
            (V{"a", "b", "c"}));  // \s is Unicode White_Space (U+3000 included)
}

TEST(HfComponents, MetaspaceDigitsByteLevelWhitespace) {
  const json meta = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"},
                     {"split", true}};
  EXPECT_EQ(pre_tokenize(meta, "Hey friend"), (V{"\u2581Hey", "\u2581friend"}));
  EXPECT_EQ(pre_tokenize(meta, "Hey friend", false), (V{"Hey", "\u2581friend"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "Call 123 please"),
            (V{"Call ", "1", "2", "3", " please"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "Call 123 please"),
            (V{"Call ", "123", " please"}));
  EXPECT_EQ(pre_tokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}},
                         "Hello  there!"),
            (V{"\u0120Hello", "\u0120", "\u0120there", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, " a\tbc \n d "), (V{"a", "bc", "d"}));
}

TEST(HfComponents, Normalizers) {
  auto norm = [](const json& j, const std::string& s) {
    return hf::parse_normalizer(j, {"t.json", "normalizer"}).apply(s);
  };
  EXPECT_EQ(norm({{"type", "NFKC"}}, "\uFB01ne \u2460"), "fine 1");
  EXPECT_EQ(norm({{"type", "NFC"}}, "e\u0301"), "\u00e9");
  EXPECT_EQ(norm({{"type", "NFD"}}, "\u00e9"), "e\u0301");
  EXPECT_EQ(norm({{"type", "Lowercase"}}, "\u00c0B\u0130"), "\u00e0bi\u0307");
  EXPECT_EQ(norm({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \u3000x "),
            "x ");
  EXPECT_EQ(norm({{"type", "Sequence"},
                  {"normalizers",
                   {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                    {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", "_"}}}}},
                 "a  b c"),
            "\u2581a_b_c");
  EXPECT_EQ(norm({{"type", "Prepend"}, {"prepend", "X"}}, ""), "");  // never on empty text
  // Invalid UTF-8 is kept byte for byte around the normalised runs.
  EXPECT_EQ(norm({{"type", "NFC"}}, std::string("e\xcc\x81\xff" "e\xcc\x81")),
            std::string("\xc3\xa9\xff\xc3\xa9"));
}

TEST(HfComponents, Decoders) {
  auto dec = [](const json& j, V toks) {
    std::string out;
    for (const auto& t : hf::parse_decoder(j, {"t.json", "decoder"}).apply(std::move(toks))) out += t;
    return out;
  };
  const json mistral = {{"type", "Sequence"},
                        {"decoders",
                         {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                          {{"type", "ByteFallback"}},
                          {{"type", "Fuse"}},
                          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(dec(mistral, {"\u2581Hello", "<0xE2>", "<0x82>", "<0xAC>", "\u2581x"}), "Hello\u20ac x");
  EXPECT_EQ(dec({{"type", "ByteLevel"}}, {"\u0120caf", "\u00c3\u00a9"}), " caf\u00e9");
  EXPECT_EQ(dec({{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}},
                {"\u2581Hey", "\u2581friend"}),
            "Hey friend");
  EXPECT_EQ(dec({{"type", "Strip"}, {"content", "x"}, {"start", 2}, {"stop", 1}}, {"xxxaxx"}), "xax");
}

// ---- added tokens and BPE options on a hand-built tokenizer ---------------------------------

std::string write_tiny(const TempDir& d, const json& model_patch, const json& added,
                       const json& post = nullptr) {
  json model = {{"type", "BPE"},
                {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {" ", 3}, {"x", 4}, {"ab", 5}}},
                {"merges", json::array({json::array({"a", "b"})})},
                {"unk_token", "<unk>"},
                {"fuse_unk", true}};
  model.update(model_patch);
  const json tj = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr},
                   {"pre_tokenizer", nullptr}, {"post_processor", post}, {"decoder", nullptr},
                   {"model", model}};
  std::ofstream(d.path / "tokenizer.json") << tj.dump();
  std::ofstream(d.path / "tokenizer_config.json") << R"({"eos_token": {"content": "[E]"}})";
  return d.path.string();
}

json added_token(int id, const char* content, bool lstrip, bool rstrip, bool single_word,
                 bool special = false) {
  return {{"id", id}, {"content", content}, {"lstrip", lstrip}, {"rstrip", rstrip},
          {"single_word", single_word}, {"normalized", false}, {"special", special}};
}

TEST(HfTokenizer, AddedTokenRulesAndUnknowns) {
  TempDir d("hf_tiny");
  const json added = {added_token(6, "[M]", true, true, false), added_token(7, "ab", false, false, true),
                      added_token(8, "[E]", false, false, false, true)};
  const json tmpl = {{"type", "TemplateProcessing"},
                     {"single", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                 {{"SpecialToken", {{"id", "[E]"}, {"type_id", 0}}}}}},
                     {"special_tokens", {{"[E]", {{"id", "[E]"}, {"ids", {8}}, {"tokens", {"[E]"}}}}}}};
  auto tok = rlhf::load_tokenizer(write_tiny(d, json::object(), added, tmpl));
  using I = std::vector<int32_t>;
  EXPECT_EQ(tok->encode("a [M] b"), (I{1, 6, 2}));          // lstrip + rstrip eat the spaces
  EXPECT_EQ(tok->encode("ab xab"), (I{7, 3, 4, 5}));        // second "ab" is inside a word
  EXPECT_EQ(tok->encode("zzab"), (I{0, 5}));                // unknowns fused, "ab" merged
  EXPECT_EQ(tok->encode_with_special_tokens("a"), (I{1, 8}));
  EXPECT_EQ(tok->encode("a[E]"), (I{1, 8}));                // specials match inside text
  EXPECT_EQ(tok->decode({1, 6, 2, 8}), "a [M] b");          // no decoder: joined with spaces; [E] dropped
  EXPECT_EQ(tok->eos_id(), 8);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->vocab_size(), 9);

  TempDir d2("hf_tiny2");
  auto unfused = rlhf::load_tokenizer(write_tiny(d2, {{"fuse_unk", false}}, added));
  EXPECT_EQ(unfused->encode("zzab"), (I{0, 0, 5}));
  TempDir d3("hf_tiny3");
  auto ignore = rlhf::load_tokenizer(write_tiny(d3, {{"ignore_merges", true},
      {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {" ", 3}, {"x", 4}, {"ab", 5}, {"xa", 9}, {"xab", 10}}},
      {"merges", {"a b", "x a"}}}, json::array({added_token(8, "[E]", false, false, false, true)})));
  EXPECT_EQ(ignore->encode("xab"), (I{10}));  // whole word in the vocabulary: no merges
  EXPECT_EQ(ignore->encode("xabx"), (I{4, 5, 4}));  // "a b" (rank 0) before "x a"
}

TEST(HfTokenizer, ContinuingSubwordPrefixAndEndOfWordSuffix) {
  TempDir d("hf_affix");
  auto tok = rlhf::load_tokenizer(write_tiny(
      d, {{"vocab", {{"<unk>", 0}, {"a", 1}, {"##b", 2}, {"ab", 3}, {"##a", 4}, {"aba", 5}}},
          {"merges", {"a ##b", "ab ##a"}}, {"continuing_subword_prefix", "##"}},
      json::array({added_token(8, "[E]", false, false, false, true)})));
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{3}));     // a + ##b -> "ab" (prefix dropped)
  EXPECT_EQ(tok->encode("aba"), (std::vector<int32_t>{5}));    // then ab + ##a
  EXPECT_EQ(tok->encode("aa"), (std::vector<int32_t>{1, 4}));  // no merge: a, ##a
  TempDir d2("hf_suffix");
  auto suf = rlhf::load_tokenizer(write_tiny(
      d2, {{"vocab", {{"<unk>", 0}, {"a", 1}, {"b</w>", 2}, {"ab</w>", 3}}},
           {"merges", {"a b</w>"}}, {"end_of_word_suffix", "</w>"}},
      json::array({added_token(8, "[E]", false, false, false, true)})));
  EXPECT_EQ(suf->encode("ab"), (std::vector<int32_t>{3}));
}

// A model folder carries its tokenizer: move the folder, the tokenizer comes along.
TEST(HfTokenizer, CheckpointCarriesItsTokenizerFiles) {
  TempDir d("hf_carry");
  auto tok = rlhf::load_tokenizer(kTokDir + "/qwen3");
  rlhf::ModelConfig cfg = rlhf::testing::tiny_config(rlhf::Family::Qwen3);
  cfg.qk_norm = true;
  cfg.vocab_size = tok->vocab_size();
  cfg.d_model = 8, cfg.n_head = 2, cfg.n_kv_head = 2, cfg.d_ff = 8, cfg.n_layer = 1;
  rlhf::CausalLM m(cfg);
  std::filesystem::create_directories(d.path / "a");
  rlhf::save_model_h5((d.path / "a/model.h5").string(), *m, cfg, rlhf::TokenizerInfo::of(*tok),
                      "causal_lm");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(d.path / "a/tokenizer" / f)) << f;
  std::filesystem::rename(d.path / "a", d.path / "b");  // move the run directory
  const rlhf::ModelFile f = rlhf::read_model_header((d.path / "b/model.h5").string());
  EXPECT_EQ(f.tok.spec, (d.path / "b/tokenizer").lexically_normal().string());
  auto moved = rlhf::load_tokenizer(f.tok.spec);
  EXPECT_EQ(moved->identity(), tok->identity());
  EXPECT_EQ(f.tok.identity, tok->identity());
}

TEST(HfTokenizer, UnsupportedInputIsAnErrorNamingFilePathAndType) {
  TempDir d("hf_bad");
  write_tiny(d, json::object(), json::array({added_token(8, "[E]", false, false, false, true)}));
  const auto path = (d.path / "tokenizer.json").string();
  json tj = json::parse(std::ifstream(path));
  auto expect = [&](const json& bad, std::vector<std::string> parts) {
    std::ofstream(path) << bad.dump();
    const std::string e = error_of([&] { rlhf::load_tokenizer(d.path.string()); });
    for (const auto& p : parts) EXPECT_NE(e.find(p), std::string::npos) << e << " lacks " << p;
  };
  json b = tj;
  b["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "NFC"}}, {{"type", "BertNormalizer"}}}}};
  expect(b, {"tokenizer.json", "normalizer.normalizers[1].type", "BertNormalizer"});
  b = tj;
  b["pre_tokenizer"] = {{"type", "Punctuation"}};
  expect(b, {"pre_tokenizer.type", "Punctuation"});
  b = tj;
  b["model"]["type"] = "WordPiece";
  expect(b, {"model.type", "WordPiece"});
  b = tj;
  b["decoder"] = {{"type", "CTC"}};
  expect(b, {"decoder.type", "CTC"});
  b = tj;
  b["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect(b, {"pre_tokenizer.pattern.Regex", "(unclosed"});
  b = tj;
  b["model"]["merges"] = {"a zz"};
  expect(b, {"model.merges[0]", "missing from the vocabulary"});
  std::ofstream(path) << tj.dump();
  std::ofstream(d.path / "tokenizer_config.json") << R"({"bos_token": null})";
  expect(tj, {"tokenizer_config.json", "eos_token"});
  std::filesystem::remove(d.path / "tokenizer_config.json");
  expect(tj, {"tokenizer_config.json", "is missing"});
}

}  // namespace
