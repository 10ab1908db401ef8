// Tests for common/data/data.h (HDF5 dataset round trip, error paths, ShardedSampler) and the hidden
// scorer of common/task/synth_task.h (hand-computed scores).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/core/check.h"
#include "common/data/data.h"
#include "common/core/h5.h"
#include "common/task/synth_task.h"
#include "common/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace {

using rlhf::testing::error_of;
using rlhf::testing::TempDir;

rlhf::DatasetMeta byte_meta() {
  auto tok = rlhf::load_tokenizer("byte");
  rlhf::DatasetMeta m;
  m.tokenizer = tok->identity();
  m.tokenizer_spec = tok->spec();
  m.vocab_size = tok->vocab_size();
  m.source = "test";
  m.report = {{"rows_read", 3}, {"rows_written", 2}, {"skipped_empty_prompt", 1}};
  return m;
}

}  // namespace

TEST(Data, SftRoundTripTokenForToken) {
  TempDir dir;
  auto tok = rlhf::load_tokenizer("byte");
  std::vector<std::pair<std::string, std::string>> rows = {
      {"list 3 fruits:", " apple, pear, plum."}, {"q", ""}, {"héllo ✓", " wörld"}};
  rlhf::SftData d;
  d.meta = byte_meta();
  for (const auto& [p, r] : rows) {
    d.prompt.push(tok->encode(p));
    d.response.push(tok->encode(r));
  }
  d.save(dir.at("sft.h5"));
  EXPECT_FALSE(fs::exists(dir.at("sft.h5") + ".tmp"));
  auto back = rlhf::SftData::load(dir.at("sft.h5"), tok->identity());
  ASSERT_EQ(back.size(), 3);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(back.prompt.row(i), tok->encode(rows[i].first)) << i;
    EXPECT_EQ(back.response.row(i), tok->encode(rows[i].second)) << i;
    EXPECT_EQ(tok->decode(back.prompt.row(i)), rows[i].first);
  }
  EXPECT_EQ(back.response.row_len(1), 0);
  EXPECT_EQ(back.meta.kind, rlhf::DataKind::Sft);
  EXPECT_EQ(back.meta.tokenizer, tok->identity());
  EXPECT_EQ(back.meta.source, "test");
  EXPECT_EQ(back.meta.vocab_size, 259);
  EXPECT_EQ(back.meta.report, byte_meta().report);
}

TEST(Data, RankedPromptPretrainRoundTrip) {
  TempDir dir;
  rlhf::RankedData r;
  r.meta = byte_meta();
  r.push_group({1, 2}, {{3}, {4, 5}, {}}, {0, 2, 1});
  r.push_group({6}, {{7}, {8}}, {1, 0});
  r.save(dir.at("r.h5"));
  auto rb = rlhf::RankedData::load(dir.at("r.h5"));
  ASSERT_EQ(rb.size(), 2);
  EXPECT_EQ(rb.group_offsets, (std::vector<int64_t>{0, 3, 5}));
  EXPECT_EQ(rb.ranks, (std::vector<int32_t>{0, 2, 1, 1, 0}));
  EXPECT_EQ(rb.responses.row(1), (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(rb.group_size(0), 3);
  EXPECT_EQ(rb.first_response(1), 3);
  EXPECT_EQ(rb.prompt.row(1), (std::vector<int32_t>{6}));
  EXPECT_THROW(r.push_group({1}, {{2}}, {0}), rlhf::Error);  // K = 1

  rlhf::PromptData p;
  p.meta = byte_meta();
  p.prompt.push({10, 11, 12});
  p.save(dir.at("p.h5"));
  EXPECT_EQ(rlhf::PromptData::load(dir.at("p.h5")).prompt.row(0), (std::vector<int32_t>{10, 11, 12}));

  rlhf::PretrainData t;
  t.meta = byte_meta();
  t.tokens = {1, 2, 257, 3, 257};
  t.save(dir.at("t.h5"));
  EXPECT_EQ(rlhf::PretrainData::load(dir.at("t.h5")).tokens, t.tokens);
  EXPECT_EQ(rlhf::load_dataset_meta(dir.at("t.h5")).kind, rlhf::DataKind::Pretrain);
}

TEST(Data, IdentityMismatchNamesBothIdentitiesAndFile) {
  TempDir dir;
  rlhf::SftData d;
  d.meta = byte_meta();
  d.prompt.push({1});
  d.response.push({2});
  d.save(dir.at("s.h5"));
  std::string msg = error_of([&] { rlhf::SftData::load(dir.at("s.h5"), "gpt2:0123456789abcdef"); });
  EXPECT_NE(msg.find("gpt2:0123456789abcdef"), std::string::npos) << msg;
  EXPECT_NE(msg.find(d.meta.tokenizer), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.at("s.h5")), std::string::npos) << msg;
}

TEST(Data, KindMismatchNamesExpectedAndFound) {
  TempDir dir;
  rlhf::PromptData p;
  p.meta = byte_meta();
  p.prompt.push({1});
  p.save(dir.at("p.h5"));
  std::string msg = error_of([&] { rlhf::RankedData::load(dir.at("p.h5")); });
  EXPECT_NE(msg.find("'prompts'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'ranked'"), std::string::npos) << msg;
}

TEST(Data, TruncatedAndForeignFilesGiveClearErrors) {
  TempDir dir;
  rlhf::SftData d;
  d.meta = byte_meta();
  for (int i = 0; i < 200; ++i) {
    d.prompt.push(std::vector<int32_t>(50, i % 250));
    d.response.push(std::vector<int32_t>(30, 7));
  }
  d.save(dir.at("full.h5"));
  std::ifstream in(dir.at("full.h5"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  for (double frac : {0.0, 0.01, 0.3, 0.6, 0.9, 0.99}) {
    std::string cut = dir.at("cut.h5");
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, static_cast<size_t>(bytes.size() * frac));
    std::string msg = error_of([&] { rlhf::SftData::load(cut); });
    EXPECT_NE(msg.find(cut), std::string::npos) << "frac " << frac << ": " << msg;
  }
  std::ofstream(dir.at("text.h5")) << "this is not hdf5\n";
  std::string msg = error_of([&] { rlhf::SftData::load(dir.at("text.h5")); });
  EXPECT_NE(msg.find("not an HDF5 file"), std::string::npos) << msg;
  {  // an HDF5 file written by something else
    auto f = rlhf::H5File::create(dir.at("foreign.h5"));
    f.write_vector("weights", std::vector<float>{1, 2, 3});
  }
  msg = error_of([&] { rlhf::PretrainData::load(dir.at("foreign.h5")); });
  EXPECT_NE(msg.find("not an rlhf dataset"), std::string::npos) << msg;
  msg = error_of([&] { rlhf::SftData::load(dir.at("missing.h5")); });
  EXPECT_NE(msg.find("missing.h5"), std::string::npos) << msg;
  // Source JSONL where a prepared dataset is expected: the error gives the command that prepares it.
  std::ofstream(dir.at("chosen.jsonl")) << "  {\"prompt\": \"hi\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
  msg = error_of([&] { rlhf::RankedData::load(dir.at("chosen.jsonl")); });
  EXPECT_NE(msg.find("is JSON (source rows), not a dataset: prepare it once with `rlhf_prep ranked --in " +
                     dir.at("chosen.jsonl") + " --out " + dir.at("chosen.h5") + "`"), std::string::npos) << msg;
}

TEST(Data, InconsistentOffsetsAndIdsRejected) {
  TempDir dir;
  rlhf::SftData d;
  d.meta = byte_meta();
  d.prompt.push({1, 2});
  d.response.push({3});
  d.save(dir.at("s.h5"));
  {  // corrupt: offsets end past the tokens
    auto f = rlhf::H5File::create(dir.at("bad.h5"));
    f.write_vector("prompt/tokens", std::vector<int32_t>{1, 2});
    f.write_vector("prompt/offsets", std::vector<int64_t>{0, 5});
    f.write_vector("response/tokens", std::vector<int32_t>{1});
    f.write_vector("response/offsets", std::vector<int64_t>{0, 1});
    f.set_attr("format_version", int64_t{1});
    f.set_attr("kind", std::string("sft"));
    f.set_attr("tokenizer", d.meta.tokenizer);
    f.set_attr("tokenizer_spec", std::string("byte"));
    f.set_attr("vocab_size", int64_t{259});
    f.set_attr("source", std::string("x"));
    f.set_attr("report_keys", std::string(""));
  }
  std::string msg = error_of([&] { rlhf::SftData::load(dir.at("bad.h5")); });
  EXPECT_NE(msg.find("prompt/offsets"), std::string::npos) << msg;
  rlhf::PretrainData t;
  t.meta = byte_meta();
  t.tokens = {1, 999};  // outside the byte vocabulary
  t.save(dir.at("t.h5"));
  msg = error_of([&] { rlhf::PretrainData::load(dir.at("t.h5")); });
  EXPECT_NE(msg.find("999"), std::string::npos) << msg;
}

// A shape that the file cannot hold is refused before anything is allocated: an unwritten chunked
// dataset claiming 10^12 tokens (HDF5 stores no chunks for it, so the file stays tiny), and one
// whose byte count overflows 64 bits.
TEST(Data, ShapesBeyondTheFileAreRefusedBeforeAllocation) {
  TempDir dir;
  auto make = [&](const std::string& name, hsize_t n) {
    rlhf::h5_quiet();
    hid_t f = H5Fcreate(dir.at(name).c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {n}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {1024};
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    EXPECT_GE(ds, 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(f);
  };
  make("huge.h5", hsize_t{1000000000000});
  make("overflow.h5", hsize_t{1} << 62);  // x 4 bytes: past 2^63
  make("small.h5", 10);
  auto f = rlhf::H5File::open_read(dir.at("huge.h5"));
  std::string msg = error_of([&] { f.read_tensor("tokens"); });
  EXPECT_NE(msg.find("huge.h5: dataset 'tokens' has shape [1000000000000] (4000000000000 bytes) "
                     "but the file holds"), std::string::npos) << msg;
  auto g = rlhf::H5File::open_read(dir.at("overflow.h5"));
  msg = error_of([&] { g.read_tensor("tokens"); });
  EXPECT_NE(msg.find("does not fit in 64 bits"), std::string::npos) << msg;
  // An unwritten small dataset reads as HDF5's fill value (0): the check does not over-reach.
  auto h = rlhf::H5File::open_read(dir.at("small.h5"));
  EXPECT_EQ(h.read_tensor("tokens").sum().item<int64_t>(), 0);
}

// ---- sampler --------------------------------------------------------------------------------

TEST(Sampler, TwoRanksCoverEachExampleOncePerEpoch) {
  const int64_t n = 12, gb = 4;
  rlhf::ShardedSampler r0(n, 42, 0, 2), r1(n, 42, 1, 2);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (int step = 0; step < n / gb; ++step) {
      auto a = r0.next(gb), b = r1.next(gb);
      ASSERT_EQ(a.size(), 2u);
      ASSERT_EQ(b.size(), 2u);
      seen.insert(seen.end(), a.begin(), a.end());
      seen.insert(seen.end(), b.begin(), b.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(n);
    for (int64_t i = 0; i < n; ++i) all[i] = i;
    EXPECT_EQ(seen, all) << "epoch " << epoch;
    EXPECT_EQ(r0.cursor(), (rlhf::Cursor{epoch + 1, 0}));
  }
}

TEST(Sampler, RankShareIsContiguousSliceOfGlobalStreamAcrossEpochWrap) {
  const int64_t n = 10, gb = 6;  // batches straddle epoch boundaries
  rlhf::ShardedSampler g(n, 7, 0, 1), r0(n, 7, 0, 2), r1(n, 7, 1, 2);
  std::vector<int64_t> stream;
  for (int64_t e = 0; e < 4; ++e) {
    auto p = g.permutation(e);
    stream.insert(stream.end(), p.begin(), p.end());
  }
  for (int step = 0; step < 6; ++step) {
    auto global = g.next(gb);
    ASSERT_EQ(global, std::vector<int64_t>(stream.begin() + step * gb, stream.begin() + (step + 1) * gb));
    EXPECT_EQ(r0.next(gb), std::vector<int64_t>(global.begin(), global.begin() + 3));
    EXPECT_EQ(r1.next(gb), std::vector<int64_t>(global.begin() + 3, global.end()));
  }
  EXPECT_EQ(g.cursor(), (rlhf::Cursor{3, 6}));
}

TEST(Sampler, PermutationsSeededAndDistinctPerEpoch) {
  rlhf::ShardedSampler a(100, 1, 0, 1), b(100, 1, 0, 1), c(100, 2, 0, 1);
  auto p0 = a.permutation(0);
  EXPECT_EQ(p0, b.permutation(0));
  EXPECT_NE(p0, a.permutation(1));
  EXPECT_NE(p0, c.permutation(0));
  auto s = p0;
  std::sort(s.begin(), s.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(s[i], i);
  int fixed = 0;
  for (int64_t i = 0; i < 100; ++i) fixed += p0[i] == i;
  EXPECT_LT(fixed, 10);  // a shuffle, not the identity (expected ~1 fixed point)
}

TEST(Sampler, CursorResumeGivesSameSequence) {
  rlhf::ShardedSampler a(13, 99, 1, 2);
  for (int i = 0; i < 5; ++i) a.next(4);
  rlhf::Cursor c = a.cursor();
  EXPECT_EQ(c, (rlhf::Cursor{1, 7}));  // 20 positions = 13 + 7
  std::vector<std::vector<int64_t>> cont;
  for (int i = 0; i < 8; ++i) cont.push_back(a.next(4));
  rlhf::ShardedSampler b(13, 99, 1, 2);
  b.set_cursor(c);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b.next(4), cont[i]) << i;
  EXPECT_THROW(b.set_cursor({0, 13}), rlhf::Error);
  EXPECT_THROW(b.next(3), rlhf::Error);  // not divisible by world = 2
  EXPECT_THROW(rlhf::ShardedSampler(0, 1, 0, 1), rlhf::Error);
  EXPECT_THROW(rlhf::ShardedSampler(5, 1, 2, 2), rlhf::Error);
}

// ---- synth scorer (values computed by hand from the rules in synth_task.h) -------------------

TEST(SynthScore, HandChecked) {
  using rlhf::synth_hidden_score;
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, pear, plum.", true), 1.0);
  // repeat: 2 distinct correct (2/3) - one repeat (0.5/3)
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, apple, pear.", true), 0.5);
  // wrong category item: 2/3 - 0.5/3
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, red, pear.", true), 0.5);
  // too many: 2/2 - 0.25
  EXPECT_DOUBLE_EQ(synth_hidden_score("name 2 colors:", " red, blue, green.", true), 0.75);
  // too few: 2/4
  EXPECT_DOUBLE_EQ(synth_hidden_score("give me 4 tools:", " hammer, saw.", true), 0.5);
  // no EOS: 1 - 0.5
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, pear, plum.", false), 0.5);
  // "." missing, or rambling after the list: 1 - 0.5 (once, even without EOS)
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, pear, plum", true), 0.5);
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, pear, plum", false), 0.5);
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 3 fruits:", " apple, pear, plum. a pear is a fruit.", true), 0.5);
  // unknown word: -0.5/1; and without EOS: -1
  EXPECT_DOUBLE_EQ(synth_hidden_score("name 1 animal:", " cat.", true), 1.0);
  EXPECT_DOUBLE_EQ(synth_hidden_score("name 1 animal:", " lion.", true), -0.5);
  EXPECT_DOUBLE_EQ(synth_hidden_score("name 1 animal:", " lion.", false), -1.0);
  // clamp: 4 wrong (-2) and 3 extra (-0.75) -> -2.75 -> -1
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 1 fruit:", " red, blue, green, pink.", true), -1.0);
  // empty list and empty item
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 2 drinks:", "", true), -0.5);
  EXPECT_DOUBLE_EQ(synth_hidden_score("list 2 drinks:", " tea,, milk.", true), 0.5);
  // distinct correct items count at most N: 3 correct for N=2 -> 1 - 0.25
  EXPECT_DOUBLE_EQ(synth_hidden_score("write 2 vegetables:", " kale, leek, pea.", true), 0.75);
  EXPECT_THROW(synth_hidden_score("what is 2+2?", " 4.", true), rlhf::Error);
}

TEST(SynthScore, ErrorKind) {
  using rlhf::synth_error_kind;
  EXPECT_EQ(synth_error_kind("list 3 fruits:", " apple, pear, plum."), "perfect");
  EXPECT_EQ(synth_error_kind("list 3 fruits:", " apple, apple, pear."), "repeat");
  EXPECT_EQ(synth_error_kind("list 3 fruits:", " apple, red, pear."), "wrong_item");
  EXPECT_EQ(synth_error_kind("name 1 animal:", " lion."), "wrong_item");
  EXPECT_EQ(synth_error_kind("give me 4 tools:", " hammer, saw."), "too_few");
  EXPECT_EQ(synth_error_kind("name 2 colors:", " red, blue, green."), "too_many");
  EXPECT_EQ(synth_error_kind("list 3 fruits:", " apple, pear, plum"), "no_period");
  EXPECT_EQ(synth_error_kind("list 3 fruits:", " apple, pear, plum. a pear is a fruit."), "rambling");
  EXPECT_EQ(synth_error_kind("list 2 drinks:", " tea,, milk."), "empty_item");
  // several at once, in the documented order; a repeated wrong word counts as a repeat and wrong
  EXPECT_EQ(synth_error_kind("list 1 fruit:", " red, red"), "no_period+too_many+repeat+wrong_item");
  EXPECT_EQ(synth_error_kind("list 2 drinks:", ""), "no_period+too_few");
  EXPECT_THROW(synth_error_kind("what is 2+2?", " 4."), rlhf::Error);
}

TEST(SynthScore, PromptParse) {
  rlhf::SynthPrompt p;
  ASSERT_TRUE(rlhf::synth_prompt_parse("list 3 fruits:", &p));
  EXPECT_EQ(p.n, 3);
  EXPECT_EQ(rlhf::synth_categories()[p.category].plural, "fruits");
  ASSERT_TRUE(rlhf::synth_prompt_parse(" give me 1 color: ", &p));
  EXPECT_EQ(p.n, 1);
  EXPECT_EQ(rlhf::synth_categories()[p.category].singular, "color");
  EXPECT_FALSE(rlhf::synth_prompt_parse("list 5 fruits:", &p));
  EXPECT_FALSE(rlhf::synth_prompt_parse("list 0 fruits:", &p));
  EXPECT_FALSE(rlhf::synth_prompt_parse("list 3 cars:", &p));
  EXPECT_FALSE(rlhf::synth_prompt_parse("list 3 fruits", &p));
  EXPECT_FALSE(rlhf::synth_prompt_parse("sing 3 fruits:", &p));
  // every generated prompt parses back to what generated it
  rlhf::SynthRng rng(5);
  for (int i = 0; i < 200; ++i) {
    rlhf::SynthPrompt q = rlhf::synth_random_prompt(rng);
    int phr = static_cast<int>(rng.uniform(4));
    ASSERT_TRUE(rlhf::synth_prompt_parse(rlhf::synth_format_prompt(q, phr), &p));
    EXPECT_EQ(p.n, q.n);
    EXPECT_EQ(p.category, q.category);
  }
}

TEST(SynthScore, GeneratorQualitiesScoreAsDesigned) {
  rlhf::SynthRng rng(11);
  for (int i = 0; i < 300; ++i) {
    rlhf::SynthPrompt p = rlhf::synth_random_prompt(rng);
    std::string prompt = rlhf::synth_format_prompt(p, 0);
    auto score = [&](rlhf::SynthQuality q) {
      return rlhf::synth_hidden_score(prompt, rlhf::synth_make_response(p, q, rng), true);
    };
    EXPECT_DOUBLE_EQ(score(rlhf::SynthQuality::Perfect), 1.0);
    EXPECT_LT(score(rlhf::SynthQuality::Repeat), 1.0);
    EXPECT_LT(score(rlhf::SynthQuality::WrongItem), 1.0);
    EXPECT_LT(score(rlhf::SynthQuality::WrongCount), 1.0);
    EXPECT_DOUBLE_EQ(score(rlhf::SynthQuality::Rambling), 0.5);
    EXPECT_DOUBLE_EQ(score(rlhf::SynthQuality::NoPeriod), 0.5);
  }
}

// Variants of one base list (the ranked data's groups): each quality scores as designed and
// keeps the base items it does not have to change.
TEST(SynthScore, VariantsOfABaseList) {
  rlhf::SynthRng rng(12);
  auto items_of = [](const std::string& r) {  // text before the first ".", split at ", "
    std::string body = r.substr(1, r.find('.') == std::string::npos ? std::string::npos : r.find('.') - 1);
    std::vector<std::string> out;
    for (size_t s = 0;;) {
      size_t c = body.find(", ", s);
      out.push_back(body.substr(s, c == std::string::npos ? std::string::npos : c - s));
      if (c == std::string::npos) break;
      s = c + 2;
    }
    return out;
  };
  for (int i = 0; i < 300; ++i) {
    rlhf::SynthPrompt p = rlhf::synth_random_prompt(rng);
    std::string prompt = rlhf::synth_format_prompt(p, 1);
    const auto base = rlhf::synth_distinct_items(p.category, p.n, rng);
    auto variant = [&](rlhf::SynthQuality q) { return rlhf::synth_make_variant(p, base, q, rng); };
    auto score = [&](const std::string& r) { return rlhf::synth_hidden_score(prompt, r, true); };
    auto shared = [&](const std::string& r) {  // base items still present
      auto it = items_of(r);
      int n = 0;
      for (const auto& b : base) n += std::count(it.begin(), it.end(), b) > 0;
      return n;
    };
    const std::string perfect = variant(rlhf::SynthQuality::Perfect);
    EXPECT_DOUBLE_EQ(score(perfect), 1.0);
    EXPECT_EQ(shared(perfect), p.n);
    const std::string rep = variant(rlhf::SynthQuality::Repeat);
    EXPECT_LT(score(rep), 1.0);
    EXPECT_EQ(shared(rep), p.n == 1 ? 1 : p.n - 1);
    const std::string wrong = variant(rlhf::SynthQuality::WrongItem);
    EXPECT_LT(score(wrong), 1.0);
    EXPECT_EQ(shared(wrong), p.n - 1);
    const std::string count = variant(rlhf::SynthQuality::WrongCount);
    EXPECT_LT(score(count), 1.0);
    EXPECT_GE(shared(count), p.n - 1);
    EXPECT_NE(static_cast<int>(items_of(count).size()), p.n);
    EXPECT_DOUBLE_EQ(score(variant(rlhf::SynthQuality::Rambling)), 0.5);
    const std::string nop = variant(rlhf::SynthQuality::NoPeriod);
    EXPECT_DOUBLE_EQ(score(nop), 0.5);
    EXPECT_EQ(nop + ".", perfect);
  }
}
