// Tests for rlhf_prep (src/tools/prep/): real sources (hh-rlhf, Open Assistant trees) against
// independent counts, every bad-input class in skip-and-count and --strict modes, truncation,
// pretrain streams, inspect, atomic output, and the embedded synth task.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/data/data.h"
#include "common/core/h5.h"
#include "common/task/synth_task.h"
#include "common/tokenizer/tokenizer.h"
#include "tools/prep/commands.h"
#include "tools/prep/synth.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using rlhf::testing::error_of;
using rlhf::testing::TempDir;

const std::string kShared = std::string(RLHF_SOURCE_DIR) + "/../shared/data/";

rlhf::PrepOptions opts(const std::vector<std::string>& in, const std::string& out) {
  rlhf::PrepOptions o;
  o.inputs = in;
  o.out = out;
  return o;
}

// Independent gzip reader for the test (zlib directly).
std::string gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  std::string out;
  char buf[8192];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

}  // namespace

// ---- real data ------------------------------------------------------------------------------

TEST(PrepReal, HhRlhfHarmlessTestAllPairsReassemble) {
  const std::string gz = kShared + "hh-rlhf/harmless-base-test.jsonl.gz";
  const std::string gpt2 = kShared + "gpt2";
  ASSERT_TRUE(fs::exists(gz)) << "missing shared data file " << gz;
  ASSERT_TRUE(fs::exists(gpt2 + "/vocab.json")) << "missing shared data file " << gpt2 << "/vocab.json";
  TempDir dir;
  auto o = opts({gz}, dir.at("hh.h5"));
  o.format = rlhf::SourceFormat::HhRlhf;
  o.tokenizer = gpt2;
  o.strict = true;  // no row may be rejected
  auto r = rlhf::run_prep_ranked(o);
  EXPECT_EQ(r.get("rows_read"), 2312);
  EXPECT_EQ(r.get("rows_written"), 2312);
  EXPECT_EQ(r.get("realigned_split"), 5);  // replies that themselves contain "\n\nAssistant:"
  auto tok = rlhf::load_tokenizer(gpt2);
  auto d = rlhf::RankedData::load(dir.at("hh.h5"), tok->identity());
  ASSERT_EQ(d.size(), 2312);
  EXPECT_EQ(d.meta.source, "hh-rlhf");
  std::istringstream lines(gunzip(gz));
  std::string line;
  int64_t g = 0;
  while (std::getline(lines, line)) {
    json j = json::parse(line);
    ASSERT_LT(g, d.size());
    ASSERT_EQ(d.group_size(g), 2);
    int64_t a = d.first_response(g);
    EXPECT_EQ(d.ranks[a], 0);
    EXPECT_EQ(d.ranks[a + 1], 1);
    std::string prompt = tok->decode(d.prompt.row(g));
    EXPECT_EQ(prompt.substr(prompt.size() - 12), "\n\nAssistant:") << g;
    EXPECT_EQ(prompt + tok->decode(d.responses.row(a)), j["chosen"].get<std::string>()) << g;
    EXPECT_EQ(prompt + tok->decode(d.responses.row(a + 1)), j["rejected"].get<std::string>()) << g;
    ++g;
  }
  EXPECT_EQ(g, 2312);
}

namespace {
bool kept(const json& r) {
  return r["role"] == "assistant" && r["deleted"] == false && r["synthetic"] == false && r.contains("rank") &&
         !r["rank"].is_null();
}

// Independent Open Assistant count: ranked groups (prompter turns with >= 2 kept replies) by K,
// and SFT threads (follow the rank-0 kept reply at each prompter turn, branch at each
// non-deleted prompter follow-up of an assistant turn, end where nothing continues).
struct OasstCount {
  std::map<int, int> k_hist;  // K -> groups
  int threads = 0;
  std::vector<std::string> first_thread;  // assistant texts of the first thread (depth-first)
  void groups(const json& m) {
    if (m["role"] == "prompter") {
      int k = 0;
      for (const auto& r : m["replies"]) k += kept(r);
      if (k >= 2) k_hist[k]++;
    }
    for (const auto& r : m["replies"]) groups(r);
  }
  // Threads below m; `path` holds the assistant texts so far.
  int walk(const json& m, std::vector<std::string>& path) {
    if (m["role"] == "prompter") {
      for (const auto& r : m["replies"])
        if (kept(r) && r["rank"] == 0) return walk(r, path);
      return 0;
    }
    path.push_back(m["text"].get<std::string>());
    int n = 0;
    for (const auto& r : m["replies"])
      if (r["role"] == "prompter" && !(r.contains("deleted") && r["deleted"] == true)) n += walk(r, path);
    if (n == 0) {
      if (threads == 0) first_thread = path;
      ++threads;
      n = 1;
    }
    path.pop_back();
    return n;
  }
};
}  // namespace

TEST(PrepReal, OasstTreesAsConversations) {
  const std::string file = kShared + "oasst/en_100_tree.jsonl";
  ASSERT_TRUE(fs::exists(file)) << "missing shared data file " << file;
  OasstCount ref;
  std::ifstream in(file);
  std::string line;
  int trees = 0;
  while (std::getline(in, line)) {
    const json t = json::parse(line);
    ref.groups(t["prompt"]);
    std::vector<std::string> path;
    ref.walk(t["prompt"], path);
    ++trees;
  }
  ASSERT_EQ(trees, 100);
  int ref_groups = 0;
  for (auto& [k, c] : ref.k_hist) ref_groups += c;

  TempDir dir;
  auto o = opts({file}, dir.at("oa.h5"));
  o.format = rlhf::SourceFormat::OasstTree;
  EXPECT_NE(error_of([&] { rlhf::run_prep_ranked(o); }).find("needs a chat template"), std::string::npos);
  o.chat_template = "hh";  // the byte tokenizer ships none
  auto rep = rlhf::run_prep_ranked(o);
  EXPECT_EQ(rep.get("rows_read"), 100);
  auto d = rlhf::RankedData::load(dir.at("oa.h5"));
  ASSERT_EQ(d.size(), ref_groups);
  std::map<int, int> hist;
  for (int64_t g = 0; g < d.size(); ++g) hist[static_cast<int>(d.group_size(g))]++;
  EXPECT_EQ(hist, ref.k_hist);
  auto tok = rlhf::load_tokenizer("byte");
  const std::string p0 = tok->decode(d.prompt.row(0));
  EXPECT_EQ(p0.rfind("\n\nHuman: ", 0), 0u) << p0;
  EXPECT_EQ(p0.substr(p0.size() - 12), "\n\nAssistant:") << p0;

  auto s = opts({file}, dir.at("oa_sft.h5"));
  s.format = rlhf::SourceFormat::OasstTree;
  s.chat_template = "hh";
  rlhf::run_prep_sft(s);
  auto sft = rlhf::SftData::load(dir.at("oa_sft.h5"));
  EXPECT_EQ(sft.size(), ref.threads);
  ASSERT_TRUE(sft.has_targets());
  // The first thread's targets: each assistant turn (" " + text, the hh layout) and the EOS
  // that ends it (hh has no end-of-turn token).
  const rlhf::PromptResponse r = sft.row(0);
  ASSERT_EQ(static_cast<size_t>(r.spans_len), 2 * ref.first_thread.size());
  for (size_t k = 0; k < ref.first_thread.size(); ++k) {
    std::vector<int32_t> span(r.response + r.spans[2 * k], r.response + r.spans[2 * k + 1]);
    EXPECT_EQ(span.back(), tok->eos_id());
    EXPECT_EQ(tok->decode(span), " " + ref.first_thread[k]);
  }
}

// ---- bad input classes ----------------------------------------------------------------------

namespace {
struct BadCase {
  const char* name;
  std::string line;
  const char* reason;  // report key after "skipped_" (or "dropped_response_" if dropped)
  bool dropped;
};
}  // namespace

TEST(PrepBad, SftEachClassSkippedAndCountedOrStrictError) {
  const std::string good = R"({"prompt":"p","response":"r"})";
  std::vector<BadCase> cases = {
      {"malformed", R"({"prompt": "p",)", "malformed_json", false},
      {"missing", R"({"prompt": "p"})", "missing_field", false},
      {"nonstring", R"({"prompt": "p", "response": 5})", "bad_field_type", false},
      {"notobject", R"([1, 2])", "missing_field", false},
      {"emptyprompt", R"({"prompt": "", "response": "r"})", "empty_prompt", false},
      {"emptyresponse", R"({"prompt": "p", "response": ""})", "empty_response", false},
      {"utf8", "{\"prompt\": \"p\xff\", \"response\": \"r\"}", "invalid_utf8", false},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string in = dir.write(std::string(c.name) + ".jsonl", good + "\n" + c.line + "\n" + good + "\n");
    auto o = opts({in}, dir.at(std::string(c.name) + ".h5"));
    auto rep = rlhf::run_prep_sft(o);
    EXPECT_EQ(rep.get("rows_read"), 3) << c.name;
    EXPECT_EQ(rep.get("rows_written"), 2) << c.name;
    EXPECT_EQ(rep.get(std::string("skipped_") + c.reason), 1) << c.name << "\n" << rep.summary();
    auto meta = rlhf::load_dataset_meta(o.out);
    EXPECT_EQ(meta.report.at(std::string("skipped_") + c.reason), 1) << c.name;
    o.strict = true;
    o.out = dir.at(std::string(c.name) + "_strict.h5");
    std::string msg = error_of([&] { rlhf::run_prep_sft(o); });
    EXPECT_NE(msg.find(in + ":2:"), std::string::npos) << c.name << ": " << msg;
    EXPECT_FALSE(fs::exists(o.out)) << c.name;
  }
  // Conversations read as plain rows: the error says the option that reads them (issue 33).
  for (const std::string line : {R"({"messages": [{"role": "user", "content": "hi"}]})",
                                 R"({"prompt": [{"role": "user", "content": "hi"}], "completion": "r"})"}) {
    auto o = opts({dir.write("conv.jsonl", line + "\n")}, dir.at("conv.h5"));
    o.strict = true;
    const std::string msg = error_of([&] { rlhf::run_prep_sft(o); });
    EXPECT_NE(msg.find("is a conversation (a list of {role, content} messages): prepare it with --format messages"),
              std::string::npos) << msg;
  }
}

TEST(PrepBad, RankedEachClassSkippedAndCountedOrStrictError) {
  const std::string good = R"({"prompt":"p","responses":["a","b","c"],"ranks":[0,1,1]})";
  std::vector<BadCase> cases = {
      {"malformed", R"({"prompt": "p", "responses": [)", "malformed_json", false},
      {"noprompt", R"({"chosen": "a", "rejected": "b"})", "missing_field", false},
      {"norejected", R"({"prompt": "p", "chosen": "a"})", "missing_field", false},
      {"noranks", R"({"prompt": "p", "responses": ["a", "b"]})", "missing_field", false},
      {"nonstringresp", R"({"prompt":"p","responses":["a",3],"ranks":[0,1]})", "bad_field_type", false},
      {"rankcount", R"({"prompt":"p","responses":["a","b"],"ranks":[0]})", "bad_ranks", false},
      {"negrank", R"({"prompt":"p","responses":["a","b"],"ranks":[0,-1]})", "bad_ranks", false},
      {"k1", R"({"prompt":"p","responses":["a"],"ranks":[0]})", "too_few_responses", false},
      {"tied", R"({"prompt":"p","responses":["a","b","c"],"ranks":[1,1,1]})", "all_ranks_tied", false},
      {"emptyprompt", R"({"prompt":"","chosen":"a","rejected":"b"})", "empty_prompt", false},
      {"utf8", "{\"prompt\":\"p\",\"chosen\":\"\xc3\x28\",\"rejected\":\"b\"}", "invalid_utf8", false},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string in = dir.write(std::string(c.name) + ".jsonl", good + "\n" + c.line + "\n");
    auto o = opts({in}, dir.at(std::string(c.name) + ".h5"));
    auto rep = rlhf::run_prep_ranked(o);
    EXPECT_EQ(rep.get("rows_written"), 1) << c.name;
    EXPECT_EQ(rep.get(std::string("skipped_") + c.reason), 1) << c.name << "\n" << rep.summary();
    o.strict = true;
    std::string msg = error_of([&] { rlhf::run_prep_ranked(o); });
    EXPECT_NE(msg.find(in + ":2:"), std::string::npos) << c.name << ": " << msg;
  }
  // A group with an empty response: the response is dropped; K < 2 after filtering skips it.
  std::string in = dir.write("drop.jsonl", good + "\n" +
                                               R"({"prompt":"p","responses":["a",""],"ranks":[0,1]})" + "\n" +
                                               R"({"prompt":"p","responses":["a","","b"],"ranks":[0,1,2]})" + "\n");
  auto o = opts({in}, dir.at("drop.h5"));
  auto rep = rlhf::run_prep_ranked(o);
  EXPECT_EQ(rep.get("dropped_response_empty_response"), 2);
  EXPECT_EQ(rep.get("skipped_too_few_responses"), 1);
  EXPECT_EQ(rep.get("rows_written"), 2);
  auto d = rlhf::RankedData::load(o.out);
  EXPECT_EQ(d.group_size(1), 2);
  EXPECT_EQ(d.ranks[d.first_response(1) + 1], 2);  // ranks kept with their responses
  o.strict = true;
  std::string msg = error_of([&] { rlhf::run_prep_ranked(o); });
  EXPECT_NE(msg.find(in + ":2:"), std::string::npos) << msg;
}

TEST(PrepBad, PromptsClassesAndNoSurvivorIsAnError) {
  TempDir dir;
  std::string in = dir.write("p.jsonl", "\"list 3 fruits:\"\n{\"prompt\": \"name 2 colors:\"}\n\n"
                                        "{\"text\": \"x\"}\n\"\"\n7\n");
  auto o = opts({in}, dir.at("p.h5"));
  auto rep = rlhf::run_prep_prompts(o);
  EXPECT_EQ(rep.get("rows_read"), 5);  // the blank line is not a row
  EXPECT_EQ(rep.get("rows_written"), 2);
  EXPECT_EQ(rep.get("skipped_missing_field"), 2);  // {"text"} and 7
  EXPECT_EQ(rep.get("skipped_empty_prompt"), 1);
  auto tok = rlhf::load_tokenizer("byte");
  auto d = rlhf::PromptData::load(o.out);
  EXPECT_EQ(tok->decode(d.prompt.row(1)), "name 2 colors:");
  o.strict = true;
  std::string msg = error_of([&] { rlhf::run_prep_prompts(o); });
  EXPECT_NE(msg.find(in + ":4:"), std::string::npos) << msg;
  std::string bad = dir.write("bad.jsonl", "{\n");
  msg = error_of([&] { rlhf::run_prep_prompts(opts({bad}, dir.at("bad.h5"))); });
  EXPECT_NE(msg.find("no row survived"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir.at("bad.h5")));
}

TEST(PrepBad, FailedRunLeavesExistingOutputIntact) {
  TempDir dir;
  std::string good = dir.write("g.jsonl", R"({"prompt":"p","response":"r"})" "\n");
  auto o = opts({good}, dir.at("out.h5"));
  rlhf::run_prep_sft(o);
  auto before = rlhf::SftData::load(o.out);
  o.inputs = {dir.write("b.jsonl", R"({"prompt":"p","response":"r"})" "\n{\n")};
  o.strict = true;
  EXPECT_THROW(rlhf::run_prep_sft(o), rlhf::Error);
  auto after = rlhf::SftData::load(o.out);
  EXPECT_EQ(after.prompt.tokens, before.prompt.tokens);
  for (const auto& e : fs::directory_iterator(dir.path))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

// gzip written by zlib's own gz* writer (each call one member), then inspected byte for byte.
std::string gzip_member(const std::string& dir, const std::string& text) {
  const std::string path = dir + "/member.gz";
  gzFile f = gzopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(PrepBad, GzipMembersTrailingDataAndTruncation) {
  TempDir dir;
  const std::string row = R"({"prompt":"p","response":"r"})" "\n";
  const std::string a = gzip_member(dir.path.string(), row + row), b = gzip_member(dir.path.string(), row);
  auto run = [&](const std::string& name, const std::string& bytes, bool strict) {
    auto o = opts({dir.write(name, bytes)}, dir.at(name + ".h5"));
    o.strict = strict;
    return rlhf::run_prep_sft(o);
  };
  // Two concatenated members are one stream (as gunzip reads them): 3 rows, nothing flagged.
  auto rep = run("two.jsonl.gz", a + b, false);
  EXPECT_EQ(rep.get("rows_written"), 3);
  EXPECT_EQ(rep.get("trailing_data_after_gzip"), 0);
  // Bytes after the stream that are not another member: counted (named with their offset), or
  // an error under --strict.
  rep = run("junk.jsonl.gz", a + "JUNK!", false);
  EXPECT_EQ(rep.get("rows_written"), 2);
  EXPECT_EQ(rep.get("trailing_data_after_gzip"), 1);
  EXPECT_NE(rep.summary().find(fmt::format("5 bytes after the gzip stream (from byte {})", a.size())),
            std::string::npos) << rep.summary();
  std::string msg = error_of([&] { run("junk2.jsonl.gz", a + "JUNK!", true); });
  EXPECT_NE(msg.find("junk2.jsonl.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not gzip data"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir.at("junk2.jsonl.gz.h5")));
  // A stream cut short (its CRC trailer lost) or with a flipped byte is an error in both modes.
  msg = error_of([&] { run("cut.jsonl.gz", a.substr(0, a.size() - 6), false); });
  EXPECT_NE(msg.find("cut.jsonl.gz': gzip stream is truncated or corrupt"), std::string::npos) << msg;
  std::string flipped = a;
  flipped[flipped.size() - 3] ^= 0x55;  // inside the length trailer
  msg = error_of([&] { run("flip.jsonl.gz", flipped, false); });
  EXPECT_NE(msg.find("flip.jsonl.gz': gzip stream is truncated or corrupt"), std::string::npos) << msg;
  // A plain file that is not gzip passes through.
  EXPECT_EQ(run("plain.jsonl", row, true).get("rows_written"), 1);
}

// ---- tokenization, truncation, pretrain, inspect -------------------------------------------

TEST(PrepTokens, LoaderYieldsExactlyWhatWasTokenizedAndTruncationRules) {
  TempDir dir;
  std::vector<std::pair<std::string, std::string>> rows = {
      {"abcdefgh", "xyz"}, {"ab", "uvwxyz"}, {"héllo", " ✓ ok"}, {"ok", "fine"}};
  std::string text;
  for (auto& [p, r] : rows) text += json({{"prompt", p}, {"response", r}}).dump() + "\n";
  std::string in = dir.write("s.jsonl", text);
  auto tok = rlhf::load_tokenizer("byte");
  auto o = opts({in}, dir.at("full.h5"));
  rlhf::run_prep_sft(o);
  auto d = rlhf::SftData::load(o.out, tok->identity());
  ASSERT_EQ(d.size(), 4);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(d.prompt.row(i), tok->encode(rows[i].first));
    EXPECT_EQ(d.response.row(i), tok->encode(rows[i].second));
  }
  o.out = dir.at("trunc.h5");
  o.max_prompt_tokens = 3;
  o.max_response_tokens = 4;
  auto rep = rlhf::run_prep_sft(o);
  EXPECT_EQ(rep.get("truncated_prompt"), 2);    // "abcdefgh", "héllo" (6 bytes)
  EXPECT_EQ(rep.get("truncated_response"), 2);  // "uvwxyz", " ✓ ok" (7 bytes)
  d = rlhf::SftData::load(o.out);
  EXPECT_EQ(tok->decode(d.prompt.row(0)), "fgh");   // prompts keep their END
  EXPECT_EQ(tok->decode(d.response.row(1)), "uvwx"); // responses keep their START
  EXPECT_EQ(tok->decode(d.prompt.row(1)), "ab");
  o.out = dir.at("skip.h5");
  o.over_length = rlhf::OverLength::Skip;
  rep = rlhf::run_prep_sft(o);
  EXPECT_EQ(rep.get("skipped_prompt_too_long"), 2);
  EXPECT_EQ(rep.get("skipped_response_too_long"), 1);  // "uvwxyz"
  EXPECT_EQ(rep.get("rows_written"), 1);
  EXPECT_EQ(rep.get("truncated_prompt") + rep.get("truncated_response"), 0);
  d = rlhf::SftData::load(o.out);
  EXPECT_EQ(tok->decode(d.response.row(0)), "fine");
  o.strict = true;
  std::string msg = error_of([&] { rlhf::run_prep_sft(o); });
  EXPECT_NE(msg.find(in + ":1:"), std::string::npos) << msg;
}

TEST(PrepTokens, PretrainStreamJoinsDocumentsWithEos) {
  TempDir dir;
  std::string a = dir.write("a.txt", "first doc.\n\nsecond para.\n");
  std::string b = dir.write("b.txt", "third.");
  std::string bad = dir.write("c.txt", "bad \xff byte");
  auto tok = rlhf::load_tokenizer("byte");
  auto o = opts({a, b, bad}, dir.at("pt.h5"));
  auto rep = rlhf::run_prep_pretrain(o);
  EXPECT_EQ(rep.get("skipped_invalid_utf8"), 1);
  auto d = rlhf::PretrainData::load(o.out);
  std::vector<int32_t> expect = tok->encode("first doc.\n\nsecond para.\n");
  expect.push_back(tok->eos_id());
  auto e2 = tok->encode("third.");
  expect.insert(expect.end(), e2.begin(), e2.end());
  expect.push_back(tok->eos_id());
  EXPECT_EQ(d.tokens, expect);
  o.paragraphs = true;
  o.inputs = {a};
  o.out = dir.at("pp.h5");
  rep = rlhf::run_prep_pretrain(o);
  EXPECT_EQ(rep.get("rows_written"), 2);
  d = rlhf::PretrainData::load(o.out);
  EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), tok->eos_id()), 2);
  o.inputs = {bad};
  o.strict = true;
  std::string msg = error_of([&] { rlhf::run_prep_pretrain(o); });
  EXPECT_NE(msg.find(bad + ":1:"), std::string::npos) << msg;
}

TEST(PrepTokens, InspectReportsKindCountsHistogramAndReport) {
  TempDir dir;
  std::string in = dir.write("r.jsonl",
                             R"({"prompt":"p","responses":["a","b","c"],"ranks":[0,1,1]})" "\n"
                             R"({"prompt":"q","chosen":"a","rejected":"b"})" "\n"
                             R"({"prompt":"q","chosen":"a"})" "\n");
  auto o = opts({in}, dir.at("r.h5"));
  rlhf::run_prep_ranked(o);
  std::ostringstream out;
  rlhf::run_prep_inspect(o.out, out);
  std::string s = out.str();
  for (const char* want : {"kind: ranked", "groups: 2", "responses: 5", "K histogram: K=2:1 K=3:1",
                           "pairs: 3", "skipped_missing_field = 1", "rows_written = 2",
                           "tokenizer: byte:"})
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
}

// ---- synth ------------------------------------------------------------------------------------

namespace {
rlhf::SynthSizes small_sizes() {
  rlhf::SynthSizes s;
  s.sft = 300;
  s.sft_eval = 20;
  s.ranked = 100;
  s.ranked_eval = 20;
  s.prompts = 50;
  s.prompts_eval = 20;
  s.pretrain_bytes = 5000;
  s.pretrain_eval_bytes = 1000;
  return s;
}
// Every dataset's values and every root attribute (via the typed meta) of two files are equal.
// (Bytes are not compared: HDF5 stamps object modification times into the headers.)
bool same_content(const std::string& a, const std::string& b) {
  auto fa = rlhf::H5File::open_read(a), fb = rlhf::H5File::open_read(b);
  if (fa.datasets() != fb.datasets()) return false;
  for (const auto& name : fa.datasets())
    if (!torch::equal(fa.read_tensor(name), fb.read_tensor(name))) return false;
  auto ma = rlhf::load_dataset_meta(a), mb = rlhf::load_dataset_meta(b);
  return ma.kind == mb.kind && ma.tokenizer == mb.tokenizer && ma.source == mb.source &&
         ma.report == mb.report && ma.vocab_size == mb.vocab_size;
}
}  // namespace

TEST(PrepSynth, DeterministicBySeed) {
  TempDir a, b, c;
  rlhf::write_synth_task(a.path, 7, small_sizes());
  rlhf::write_synth_task(b.path, 7, small_sizes());
  rlhf::write_synth_task(c.path, 8, small_sizes());
  for (const char* f : {"sft.h5", "sft_eval.h5", "ranked.h5", "ranked_eval.h5", "prompts.h5",
                        "prompts_eval.h5", "pretrain.h5", "pretrain_eval.h5"}) {
    ASSERT_TRUE(fs::exists(a.at(f))) << f;
    EXPECT_EQ(rlhf::load_dataset_meta(a.at(f)).source, "synth");
    EXPECT_TRUE(same_content(a.at(f), b.at(f))) << f;
    EXPECT_FALSE(same_content(a.at(f), c.at(f))) << f;
  }
  auto s1 = rlhf::SftData::load(a.at("sft.h5")), s2 = rlhf::SftData::load(b.at("sft.h5"));
  EXPECT_EQ(s1.response.tokens, s2.response.tokens);
  EXPECT_EQ(s1.prompt.offsets, s2.prompt.offsets);
}

TEST(PrepSynth, ContentFollowsTheDesign) {
  TempDir dir;
  auto sz = small_sizes();
  rlhf::write_synth_task(dir.path, 3, sz);
  auto tok = rlhf::load_tokenizer("byte");
  auto sft = rlhf::SftData::load(dir.at("sft.h5"), tok->identity());
  ASSERT_EQ(sft.size(), sz.sft);
  int perfect = 0;
  for (int64_t i = 0; i < sft.size(); ++i) {
    std::string p = tok->decode(sft.prompt.row(i)), r = tok->decode(sft.response.row(i));
    rlhf::SynthPrompt sp;
    ASSERT_TRUE(rlhf::synth_prompt_parse(p, &sp)) << p;
    ASSERT_EQ(r[0], ' ') << r;
    perfect += rlhf::synth_hidden_score(p, r, true) == 1.0;
  }
  EXPECT_GT(perfect, sz.sft * 30 / 100);  // ~40% perfect: mixed quality
  EXPECT_LT(perfect, sz.sft * 50 / 100);
  EXPECT_EQ(sft.meta.report.at("demo_perfect"), perfect);

  auto rk = rlhf::RankedData::load(dir.at("ranked.h5"));
  ASSERT_EQ(rk.size(), sz.ranked);
  for (int64_t g = 0; g < rk.size(); ++g) {
    ASSERT_GE(rk.group_size(g), 4);
    ASSERT_LE(rk.group_size(g), 9);
    std::string p = tok->decode(rk.prompt.row(g));
    int64_t f = rk.first_response(g);
    for (int64_t x = f; x < f + rk.group_size(g); ++x)
      for (int64_t y = f; y < f + rk.group_size(g); ++y) {
        double sx = rlhf::synth_hidden_score(p, tok->decode(rk.responses.row(x)), true);
        double sy = rlhf::synth_hidden_score(p, tok->decode(rk.responses.row(y)), true);
        ASSERT_EQ(rk.ranks[x] < rk.ranks[y], sx > sy + 1e-9) << "group " << g;
      }
  }
  auto pe = rlhf::PromptData::load(dir.at("prompts_eval.h5"));
  EXPECT_EQ(pe.size(), sz.prompts_eval);
  auto pt = rlhf::PretrainData::load(dir.at("pretrain.h5"));
  EXPECT_GE(pt.size(), sz.pretrain_bytes);
  EXPECT_EQ(pt.tokens.back(), tok->eos_id());
  std::string first(pt.tokens.begin(),
                    std::find(pt.tokens.begin(), pt.tokens.end(), tok->eos_id()));
  EXPECT_EQ(first.back(), '.');
}
