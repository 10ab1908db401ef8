// rlhf_convert's commands called in-process (src/tools/convert/convert.h): a freshly initialised
// model exported to a Hugging Face folder and imported back is bit-identical, for both families;
// bad input names the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/io/model_file.h"
#include "support/test_support.h"
#include "tools/convert/convert.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

using testing::error_of;
using testing::TempDir;

TEST(Convert, InitToHfFromHfRoundTripIsBitIdentical) {
  TempDir d("convert");
  for (const char* family : {"gpt2", "llama"}) {
    const std::string ckpt = d.at(std::string(family) + "_init"), hf = d.at(std::string(family) + "_hf"),
                      back = d.at(std::string(family) + "_back");
    // llama with grouped-query attention and an untied head; gpt2 with its defaults (tied).
    const std::string cfg = std::string(family) == "llama"
        ? R"({"n_layer": 2, "n_head": 4, "n_kv_head": 2, "d_model": 32, "d_ff": 64, "max_seq_len": 32,
              "tie_embeddings": false})"
        : R"({"n_layer": 2, "n_head": 4, "d_model": 32, "d_ff": 64, "max_seq_len": 32})";
    ASSERT_EQ(init_model(family, cfg, "byte", 3, "causal_lm", ckpt), 0);
    ASSERT_EQ(to_hf(ckpt, hf), 0);
    EXPECT_TRUE(fs::exists(fs::path(hf) / "model.safetensors"));
    EXPECT_TRUE(fs::exists(fs::path(hf) / "config.json"));
    ASSERT_EQ(from_hf(hf, back, "byte"), 0);
    ModelFile a = read_model_h5(resolve_model_path(ckpt)), b = read_model_h5(resolve_model_path(back));
    EXPECT_EQ(a.cfg.to_json(), b.cfg.to_json()) << family;
    ASSERT_EQ(a.tensors.size(), b.tensors.size()) << family;
    for (const auto& [name, t] : a.tensors) {
      ASSERT_TRUE(b.tensors.count(name)) << family << " " << name;
      EXPECT_TRUE(torch::equal(t, b.tensors.at(name))) << family << " " << name;
    }
  }
}

TEST(Convert, ToHfWritesTheTrainedChatTemplate) {
  TempDir d("convert_chat");
  ASSERT_EQ(init_model("gpt2", R"({"n_layer": 1, "n_head": 2, "d_model": 16, "d_ff": 32, "max_seq_len": 16})",
                       "byte", 3, "causal_lm", d.at("init")), 0);
  ModelFile f = read_model_h5(resolve_model_path(d.at("init")));
  EXPECT_TRUE(f.tok.chat_template.empty());
  f.tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  f.tok.chat_template_name = "mine.jinja";
  f.tok.end_of_turn = -1;
  fs::create_directories(d.at("chat"));
  save_model_file(d.at("chat") + "/model.h5", f);
  EXPECT_EQ(read_model_h5(d.at("chat") + "/model.h5").tok.chat_template, f.tok.chat_template);
  ASSERT_EQ(to_hf(d.at("chat"), d.at("hf")), 0);
  const auto j = nlohmann::json::parse(std::ifstream(d.at("hf") + "/tokenizer_config.json"));
  EXPECT_EQ(j.at("chat_template"), f.tok.chat_template);
  ASSERT_EQ(to_hf(d.at("init"), d.at("hf_plain")), 0);  // no template: no config written for byte
  EXPECT_FALSE(fs::exists(d.at("hf_plain") + "/tokenizer_config.json"));
}

TEST(Convert, BadInputNamesTheFile) {
  TempDir d("convert");
  std::string msg = error_of([&] { from_hf(d.at("missing"), d.at("out"), "byte"); });
  EXPECT_NE(msg.find(d.at("missing")), std::string::npos) << msg;
  fs::create_directories(d.path / "empty");
  msg = error_of([&] { from_hf(d.at("empty"), d.at("out"), "byte"); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  msg = error_of([&] { init_model("gpt2", "{", "byte", 0, "causal_lm", d.at("x")); });
  EXPECT_NE(msg.find("--config-json"), std::string::npos) << msg;
}

}  // namespace
}  // namespace rlhf
