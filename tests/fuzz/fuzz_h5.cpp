// Fuzzes the HDF5 dataset and model-header loaders at the level of a file's content: each input
// is decoded (FuzzedDataProvider) into a well-formed HDF5 file with hostile content — root
// attributes present or absent, of the expected type or not, with plausible or arbitrary values;
// ragged arrays whose offsets may start elsewhere, decrease or overrun; ids outside the
// vocabulary; groups and ranks that disagree; datasets of the wrong element type — then read by
// every loader, and every loaded row is visited. (HDF5's own byte-level parsing is the HDF5
// library's; what this project owns is what it accepts from a readable file.)
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "common/core/h5.h"
#include "common/data/data.h"
#include "common/io/model_file.h"
#include "fuzz_util.h"

using namespace rlhf;

namespace {

struct Writer {
  FuzzedDataProvider& p;
  H5File& f;

  void str_attr(const char* key, const std::vector<std::string>& plausible) {
    switch (p.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: return;  // absent
      case 1: f.set_attr(key, plausible[p.ConsumeIntegralInRange<size_t>(0, plausible.size() - 1)]); return;
      case 2: f.set_attr(key, p.ConsumeRandomLengthString(64)); return;
      default: f.set_attr(key, p.ConsumeIntegral<int64_t>());  // wrong type
    }
  }
  void int_attr(const char* key, int64_t plausible) {
    switch (p.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: return;
      case 1: f.set_attr(key, plausible); return;
      case 2: f.set_attr(key, p.ConsumeIntegral<int64_t>()); return;
      default: f.set_attr(key, std::string("12"));  // wrong type
    }
  }
  std::vector<int32_t> ids(size_t n, int32_t vocab) {
    std::vector<int32_t> v(n);
    for (auto& x : v) x = p.ConsumeBool() ? p.ConsumeIntegralInRange<int32_t>(0, vocab + 2) - 1
                                          : p.ConsumeIntegral<int32_t>();
    return v;
  }
  // A ragged array (or a flat dataset when `name` has no offsets): consistent, or not.
  void ragged(const std::string& name) {
    if (p.ConsumeIntegralInRange<int>(0, 4) == 0) return;  // absent
    const size_t rows = p.ConsumeIntegralInRange<size_t>(0, 8);
    std::vector<int64_t> off{0};
    for (size_t i = 0; i < rows; ++i) off.push_back(off.back() + p.ConsumeIntegralInRange<int64_t>(0, 6));
    std::vector<int32_t> tok = ids(static_cast<size_t>(off.back()), 259);
    switch (p.ConsumeIntegralInRange<int>(0, 5)) {
      case 0: off.front() = p.ConsumeIntegralInRange<int64_t>(-3, 3); break;
      case 1: if (!off.empty()) off.back() += p.ConsumeIntegralInRange<int64_t>(-3, 3); break;
      case 2: if (off.size() > 2) std::swap(off[1], off[2]); break;
      case 3: off.clear(); break;
      default: break;
    }
    if (p.ConsumeIntegralInRange<int>(0, 7) == 0)
      f.write_vector(name + "/tokens", std::vector<float>(tok.begin(), tok.end()));  // wrong type
    else
      f.write_vector(name + "/tokens", tok);
    if (p.ConsumeIntegralInRange<int>(0, 7) == 0) f.write_vector(name + "/offsets", std::vector<int32_t>(off.begin(), off.end()));
    else if (!off.empty() || p.ConsumeBool()) f.write_vector(name + "/offsets", off);
  }
};

void write_file(FuzzedDataProvider& p, const std::string& path) {
  H5File f = H5File::create(path);
  Writer w{p, f};
  w.int_attr("format_version", 1);
  w.str_attr("kind", {"sft", "ranked", "prompts", "pretrain", "causal_lm", "scalar"});
  w.str_attr("tokenizer", {"byte"});
  w.str_attr("tokenizer_spec", {"byte"});
  w.int_attr("vocab_size", 259);
  w.str_attr("source", {"jsonl"});
  w.int_attr("n_examples", p.ConsumeIntegralInRange<int64_t>(0, 8));
  w.int_attr("n_responses", p.ConsumeIntegralInRange<int64_t>(0, 16));
  w.int_attr("n_tokens", p.ConsumeIntegralInRange<int64_t>(0, 64));
  w.str_attr("report_keys", {"rows_read,rows_written", "", ",", "rows_read,,x"});
  w.int_attr("rows_read", 3);
  w.int_attr("rows_written", 2);
  w.str_attr("chat_template", {"", "{{ messages[0].content }}"});
  w.str_attr("chat_template_name", {"chatml"});
  w.int_attr("end_of_turn", p.ConsumeIntegralInRange<int64_t>(-2, 300));
  w.str_attr("model_config", {R"({"family":"gpt2","vocab_size":259,"n_layer":1,"n_head":1,)"
                              R"("n_kv_head":1,"d_model":8,"d_ff":16,"max_seq_len":16})", "{}", "[1]"});
  w.str_attr("extra", {"{}", "null"});
  for (const char* name : {"prompt", "response", "responses", "targets"}) w.ragged(name);
  if (p.ConsumeBool()) f.write_vector("tokens", w.ids(p.ConsumeIntegralInRange<size_t>(0, 64), 259));
  if (p.ConsumeBool()) {
    std::vector<int64_t> g{0};
    for (size_t i = 0, n = p.ConsumeIntegralInRange<size_t>(0, 4); i < n; ++i)
      g.push_back(g.back() + p.ConsumeIntegralInRange<int64_t>(-1, 5));
    f.write_vector("group_offsets", g);
  }
  if (p.ConsumeBool()) {
    std::vector<int32_t> r(p.ConsumeIntegralInRange<size_t>(0, 16));
    for (auto& x : r) x = p.ConsumeIntegralInRange<int32_t>(-2, 9);
    f.write_vector("ranks", r);
  }
  f.close();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  const std::string path = fuzz::scratch_dir() + "/data.h5";
  write_file(p, path);
  fuzz::expect_clean([&] { load_dataset_meta(path); });
  fuzz::expect_clean([&] {
    SftData d = SftData::load(path);
    for (int64_t i = 0; i < d.size(); ++i) (void)d.row(i);
  });
  fuzz::expect_clean([&] {
    RankedData d = RankedData::load(path);
    for (int64_t g = 0; g < d.size(); ++g) (void)d.group_rows(g);
  });
  fuzz::expect_clean([&] {
    PromptData d = PromptData::load(path);
    for (int64_t i = 0; i < d.size(); ++i) (void)d.prompt.row(i);
  });
  fuzz::expect_clean([&] { PretrainData::load(path); });
  fuzz::expect_clean([&] { read_model_header(path); });
  return 0;
}
