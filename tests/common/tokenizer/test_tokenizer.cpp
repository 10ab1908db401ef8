// Tokenizer tests: GPT-2 against the reference encoder's golden ids, llama2.c against ids derived
// by hand from tok512.bin's pieces (read here with an independent reader), byte round trips,
// identities, error messages, and run_encode.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"
#include "tools/prep/encode.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace {

using rlhf::testing::TempDir;

const std::string kData = RLHF_SOURCE_DIR "/../shared/data";
const std::string kGpt2Dir = kData + "/gpt2";
const std::string kTok512 = kData + "/stories260K/tok512.bin";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing test data file " << path;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Expects fn to throw rlhf::Error whose message contains every one of needles.
template <typename F>
void expect_error(F&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "expected rlhf::Error";
  } catch (const rlhf::Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message '" << e.what() << "' lacks '" << n << "'";
  }
}


// Independent tok512.bin reader (pieces + byte offset where each token record starts).
struct RawVocab {
  std::vector<std::string> pieces;
  std::vector<size_t> offsets;
  int32_t id(const std::string& piece) const {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i] == piece) return static_cast<int32_t>(i);
    ADD_FAILURE() << "piece '" << piece << "' not in tok512.bin";
    return -1;
  }
  bool has(const std::string& piece) const {
    for (const auto& p : pieces)
      if (p == piece) return true;
    return false;
  }
};

RawVocab read_tok512() {
  const std::string d = slurp(kTok512);
  RawVocab v;
  size_t o = 4;
  while (o + 8 <= d.size()) {
    int32_t len;
    std::memcpy(&len, d.data() + o + 4, 4);
    v.offsets.push_back(o);
    v.pieces.push_back(d.substr(o + 8, len));
    o += 8 + len;
  }
  return v;
}

}  // namespace

// ---- GPT-2 ---------------------------------------------------------------------------------

TEST(TokenizerGpt2, GoldenTokensExact) {
  const std::string golden = kGpt2Dir + "/golden_tokens.jsonl";
  std::ifstream f(golden);
  ASSERT_TRUE(f.good()) << "missing test data file " << golden;
  auto tok = rlhf::load_tokenizer(kGpt2Dir);
  ASSERT_EQ(tok->kind(), "gpt2");
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->eos_id(), 50256);
  EXPECT_EQ(tok->bos_id(), 50256);
  EXPECT_EQ(tok->pad_id(), 50256);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const std::string text = j.at("text").get<std::string>();
    const auto want = j.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(text), want) << "line " << n + 1 << ": " << text;
    EXPECT_EQ(tok->decode(want), text) << "line " << n + 1;
    ++n;
  }
  EXPECT_EQ(n, 26) << "golden file changed size";
  std::cout << "[ golden ] " << n << " GPT-2 golden lines checked\n";
}

TEST(TokenizerGpt2, PretokenizerSplitsLikeReferenceRegex) {
  auto tok = rlhf::Gpt2Tokenizer::load(kGpt2Dir);
  // By hand: contraction, a lone space before another space (\s+(?!\S)), " ?\p{L}+", numbers.
  const std::vector<std::string> want = {"I", "'m", " ", " fine", " 42", "!!", "\n"};
  EXPECT_EQ(tok->pretokenize("I'm  fine 42!!\n"), want);
  // \s is Unicode White_Space as in Python's `regex`: U+0085 is a space, U+180E is not.
  EXPECT_EQ(tok->pretokenize("x \xc2\x85y"), (std::vector<std::string>{"x", " ", "\xc2\x85", "y"}));
  EXPECT_EQ(tok->pretokenize("x \xe1\xa0\x8ey"),
            (std::vector<std::string>{"x", " \xe1\xa0\x8e", "y"}));
}

TEST(TokenizerGpt2, InvalidUtf8IsBytewiseAndRoundTrips) {
  auto tok = rlhf::Gpt2Tokenizer::load(kGpt2Dir);
  const auto vocab = nlohmann::json::parse(slurp(kGpt2Dir + "/vocab.json"));
  // Byte 0xFF maps to U+00FF "ÿ" in bytes_to_unicode; a/b are themselves.
  const std::vector<int32_t> want = {vocab.at("a").get<int32_t>(),
                                     vocab.at("\xc3\xbf").get<int32_t>(),
                                     vocab.at("b").get<int32_t>()};
  EXPECT_EQ(tok->encode("a\xff" "b"), want);
  for (const std::string& s : {std::string("\xc3"), std::string("ok \xe2\x82 \xff\xfe x\x80"),
                              std::string("nul\0byte", 8)})
    EXPECT_EQ(tok->decode(tok->encode(s)), s);
  EXPECT_EQ(tok->decode({50256, 15496, 50256}), "Hello");  // <|endoftext|> dropped
  expect_error([&] { tok->decode({50257}); }, {"50257", "position 0"});
}

TEST(TokenizerGpt2, LongTextRoundTripAndThreadsAgree) {
  const std::string text = slurp(kData + "/corpus/tinyshakespeare.txt").substr(0, 20000);
  auto tok = rlhf::load_tokenizer(kGpt2Dir);
  const auto ids = tok->encode(text);
  EXPECT_LT(ids.size(), text.size() / 2);  // BPE compresses English well below 2 bytes/token
  EXPECT_EQ(tok->decode(ids), text);
  // A fresh tokenizer (empty cache) and concurrent callers agree with the cached result.
  auto fresh = rlhf::load_tokenizer(kGpt2Dir);
  std::vector<int32_t> a, b;
  std::thread t1([&] { a = fresh->encode(text); });
  std::thread t2([&] { b = fresh->encode(text); });
  t1.join();
  t2.join();
  EXPECT_EQ(a, ids);
  EXPECT_EQ(b, ids);
}

// ---- byte ----------------------------------------------------------------------------------

TEST(TokenizerByte, RoundTripAndSpecials) {
  auto tok = rlhf::load_tokenizer("byte");
  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_EQ(tok->pad_id(), 258);
  EXPECT_EQ(tok->spec(), "byte");
  const std::string s = "h\xc3\xa9\n\xf0\x9f\x98\x80";  // "hé\n😀"
  const std::vector<int32_t> want = {104, 0xC3, 0xA9, 10, 0xF0, 0x9F, 0x98, 0x80};
  EXPECT_EQ(tok->encode(s), want);
  EXPECT_EQ(tok->decode(want), s);
  EXPECT_EQ(tok->decode({256, 104, 105, 257, 258, 258}), "hi");
  EXPECT_EQ(tok->encode(std::string("\0\xff", 2)), (std::vector<int32_t>{0, 255}));
  expect_error([&] { tok->decode({104, 259}); }, {"259", "position 1"});
  expect_error([&] { tok->decode({-1}); }, {"-1"});
}

// ---- llama2.c ------------------------------------------------------------------------------

TEST(TokenizerLlama2c, EncodeMatchesHandDerivedIds) {
  const RawVocab v = read_tok512();
  ASSERT_EQ(v.pieces.size(), 512u);
  auto tok = rlhf::load_tokenizer(kTok512);
  ASSERT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_TRUE(tok->encode("").empty());
  // "the": [" ","t","h","e"] -> " t" (score 0) -> "he" (-1) -> " the".
  EXPECT_EQ(tok->encode("the"), (std::vector<int32_t>{v.id(" the")}));
  // "Lily": "il" (-31) beats " L" (-48); then " L"; then "ily" (-51); then " Lily".
  EXPECT_EQ(tok->encode("Lily"), (std::vector<int32_t>{v.id(" Lily")}));
  // "a  b": " a" first (leftmost best); "  " and "  b" are not pieces, so " ", " b" stay.
  ASSERT_FALSE(v.has("  "));
  EXPECT_EQ(tok->encode("a  b"), (std::vector<int32_t>{v.id(" a"), v.id(" "), v.id(" b")}));
  // "é" is a whole piece; "\n" and the emoji are not -> <0xNN> fallback at byte + 3.
  ASSERT_FALSE(v.has("\n"));
  EXPECT_EQ(tok->encode("\xc3\xa9"), (std::vector<int32_t>{v.id(" "), v.id("\xc3\xa9")}));
  EXPECT_EQ(tok->encode("\n"), (std::vector<int32_t>{v.id(" "), v.id("<0x0A>")}));
  EXPECT_EQ(v.id("<0x0A>"), 0x0A + 3);
  EXPECT_EQ(tok->encode("\xf0\x9f\x98\x80"),
            (std::vector<int32_t>{v.id(" "), 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3}));
}

TEST(TokenizerLlama2c, DecodeRules) {
  const RawVocab v = read_tok512();
  auto tok = rlhf::Llama2cTokenizer::load(kTok512);
  const int32_t the = v.id(" the");
  EXPECT_EQ(tok->decode({1, the, the}), "the the");  // leading space dropped only after BOS
  EXPECT_EQ(tok->decode({the}), " the");
  EXPECT_EQ(tok->decode({1, 0x0A + 3, 0xC3 + 3, 0xA9 + 3}), "\n\xc3\xa9");  // <0xNN> -> bytes
  EXPECT_EQ(tok->decode({1, 2, 0}), "");
  EXPECT_EQ(tok->decode_piece(1, the), "the");
  EXPECT_EQ(tok->decode_piece(the, the), " the");
  EXPECT_EQ(tok->piece(the), " the");
  EXPECT_FLOAT_EQ(tok->score(the), -6.0f);
  expect_error([&] { tok->decode({512}); }, {"512"});
}

TEST(TokenizerLlama2c, RoundTrips) {
  auto tok = rlhf::load_tokenizer(kTok512);
  std::string greedy = slurp(kData + "/stories260K/expected_greedy_200.txt");
  for (const std::string& s :
       {std::string("Once upon a time, there was a little girl named Lily."),
        std::string("She said, \"I can't find it!\"\n\nThe end."),
        std::string("caf\xc3\xa9 \xe2\x80\x9cquotes\xe2\x80\x9d \xf0\x9f\x98\x80 \xe4\xb8\xad"),
        std::string("  two leading spaces"), greedy}) {
    auto ids = tok->encode(s);
    ids.insert(ids.begin(), tok->bos_id());
    EXPECT_EQ(tok->decode(ids), s);
  }
}

// ---- identity and errors -------------------------------------------------------------------

TEST(TokenizerIdentity, DistinctStableAndContentSensitive) {
  const std::regex fmt_re("^(byte|gpt2|llama2c):[0-9a-f]{16}$");
  auto byte = rlhf::load_tokenizer("byte");
  auto gpt2 = rlhf::load_tokenizer(kGpt2Dir);
  auto ll = rlhf::load_tokenizer(kTok512);
  for (auto* t : {byte.get(), gpt2.get(), ll.get()}) {
    EXPECT_TRUE(std::regex_match(t->identity(), fmt_re)) << t->identity();
    EXPECT_EQ(t->identity().rfind(t->kind() + ":", 0), 0u);
  }
  EXPECT_NE(byte->identity(), gpt2->identity());
  EXPECT_NE(gpt2->identity(), ll->identity());
  EXPECT_EQ(rlhf::load_tokenizer(kTok512)->identity(), ll->identity());
  EXPECT_EQ(rlhf::load_tokenizer(kGpt2Dir)->identity(), gpt2->identity());
  // spec() rebuilds the same tokenizer and is absolute.
  EXPECT_TRUE(fs::path(ll->spec()).is_absolute());
  EXPECT_EQ(rlhf::load_tokenizer(ll->spec())->identity(), ll->identity());
  EXPECT_EQ(rlhf::load_tokenizer(gpt2->spec())->identity(), gpt2->identity());
  // Changing one score changes the identity.
  TempDir dir("ident");
  std::string d = slurp(kTok512);
  const RawVocab v = read_tok512();
  float s = -1000.f;
  std::memcpy(&d[v.offsets[300]], &s, 4);
  const std::string copy = (dir.path / "tok.bin").string();
  std::ofstream(copy, std::ios::binary) << d;
  EXPECT_NE(rlhf::load_tokenizer(copy)->identity(), ll->identity());
}

TEST(TokenizerErrors, ClearMessages) {
  TempDir dir("err");
  const std::string missing = (dir.path / "nope").string();
  expect_error([&] { rlhf::load_tokenizer(missing); }, {missing, "does not exist"});
  // Folder with vocab.json but no merges.txt.
  fs::create_directories(dir.path / "half");
  fs::copy_file(kGpt2Dir + "/vocab.json", dir.path / "half" / "vocab.json");
  expect_error([&] { rlhf::load_tokenizer((dir.path / "half").string()); }, {"merges.txt"});
  // Malformed vocab.json.
  fs::create_directories(dir.path / "bad");
  std::ofstream(dir.path / "bad" / "vocab.json") << "{\"a\": 0, \"b\": ";
  fs::copy_file(kGpt2Dir + "/merges.txt", dir.path / "bad" / "merges.txt");
  expect_error([&] { rlhf::load_tokenizer((dir.path / "bad").string()); },
               {(dir.path / "bad" / "vocab.json").string(), "not valid JSON"});
  // tok512.bin truncated in the middle of token 100's piece, and inside the header.
  const RawVocab v = read_tok512();
  const std::string d = slurp(kTok512);
  const std::string cut = (dir.path / "cut.bin").string();
  std::ofstream(cut, std::ios::binary) << d.substr(0, v.offsets[100] + 9);
  expect_error([&] { rlhf::load_tokenizer(cut); }, {cut, "token 100", "truncated"});
  std::ofstream(cut, std::ios::binary) << d.substr(0, 2);
  expect_error([&] { rlhf::load_tokenizer(cut); }, {cut, "truncated header"});
}

// ---- run_encode ----------------------------------------------------------------------------

TEST(TokenizerRunEncode, EachKind) {
  {
    std::istringstream in("\"hi\"\n\"\"\n\"\\u00e9\"\n");
    std::ostringstream out;
    EXPECT_EQ(rlhf::run_encode({"byte"}, in, out), 0);
    EXPECT_EQ(out.str(), "[104,105]\n[]\n[195,169]\n");
  }
  {
    std::istringstream in("\"Hello world\"\r\n\"Hello, world!\"\n");  // ids from golden file
    std::ostringstream out;
    rlhf::run_encode({kGpt2Dir}, in, out);
    EXPECT_EQ(out.str(), "[15496,995]\n[15496,11,995,0]\n");
  }
  {
    const RawVocab v = read_tok512();
    std::istringstream in("\"the\"\n\"Lily\"\n");
    std::ostringstream out;
    rlhf::run_encode({kTok512}, in, out);
    EXPECT_EQ(out.str(), "[" + std::to_string(v.id(" the")) + "]\n[" +
                             std::to_string(v.id(" Lily")) + "]\n");
  }
  std::istringstream bad_json("\"ok\"\n{not json\n");
  std::ostringstream sink;
  expect_error([&] { rlhf::run_encode({"byte"}, bad_json, sink); }, {"line 2"});
  std::istringstream not_string("42\n");
  expect_error([&] { rlhf::run_encode({"byte"}, not_string, sink); }, {"line 1", "string"});
}
