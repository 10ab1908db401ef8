// hf.cpp — HfTokenizer: a Hugging Face tokenizer.json (hf_components.h stages + hf_bpe.h model)
// with BOS/EOS/PAD from tokenizer_config.json and stop ids from generation_config.json.
// Contract: tokenizer.h.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/tokenizer/hf_bpe.h"
#include "common/tokenizer/hf_components.h"
#include "common/tokenizer/text.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

bool is_word_char(uint32_t cp) { return cp == '_' || text::is_alphanumeric(cp); }

// The codepoint that ends at byte `end` of s (end > 0).
uint32_t codepoint_before(const std::string& s, size_t end) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80 && end - b < 4) --b;
  return text::next_codepoint(s, b);
}

// One segment of the input: an added token (id >= 0) or text still to tokenize.
struct Segment {
  std::string text;
  int32_t id = -1;
  bool at_start = false;
};

}  // namespace

struct HfTokenizer::Impl {
  std::string spec, json_path;
  std::vector<std::string> files;
  std::unique_ptr<hf::BpeModel> model;
  std::vector<hf::Normalizer> normalizer;      // 0 or 1
  std::vector<hf::PreTokenizer> pre_tokenizer;  // 0 or 1
  hf::PostProcessor post;
  std::vector<hf::Decoder> decoder;  // 0 or 1
  std::vector<AddedToken> added;     // matched longest first
  std::unordered_map<int32_t, size_t> added_by_id;
  std::array<bool, 256> added_first_byte{};
  int32_t vocab = 0, bos = -1, eos = -1, pad = -1;
  std::vector<int32_t> stops;
  std::string identity;

  std::string decode(const std::vector<int32_t>& ids, bool keep_special) const;

  int32_t token_id(const std::string& t) const {
    for (const auto& a : added)
      if (a.content == t) return a.id;
    return model->id_of(t);
  }

  // Splits s on the added tokens whose `normalized` flag equals `normalized` (huggingface's
  // find_matches: leftmost-longest; single_word, lstrip and rstrip honoured).
  void split_added(const Segment& in, bool normalized, std::vector<Segment>& out) const {
    const std::string& s = in.text;
    size_t done = 0, pos = 0;
    while (pos < s.size()) {
      if (!added_first_byte[static_cast<unsigned char>(s[pos])]) {
        ++pos;
        continue;
      }
      const AddedToken* hit = nullptr;
      for (const auto& a : added)  // longest first
        if (a.normalized == normalized && s.compare(pos, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      if (hit == nullptr) {
        ++pos;
        continue;
      }
      size_t b = pos, e = pos + hit->content.size();
      pos = e;
      auto cp_at = [&](size_t k) { return text::next_codepoint(s, k); };
      if (hit->single_word && ((b > 0 && is_word_char(codepoint_before(s, b))) ||
                               (e < s.size() && is_word_char(cp_at(e)))))
        continue;
      while (hit->lstrip && b > done) {
        size_t k = b - 1;
        while (k > done && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!text::is_whitespace(cp_at(k))) break;
        b = k;
      }
      while (hit->rstrip && e < s.size()) {
        size_t k = e;
        if (!text::is_whitespace(text::next_codepoint(s, k))) break;
        e = k;
      }
      if (b > done) out.push_back({s.substr(done, b - done), -1, in.at_start && done == 0});
      out.push_back({s.substr(b, e - b), hit->id, false});
      done = pos = e;
    }
    if (s.size() > done) out.push_back({s.substr(done), -1, in.at_start && done == 0});
  }

  std::vector<int32_t> encode(const std::string& text) const {
    std::vector<Segment> raw, segs;
    split_added({text, -1, true}, false, raw);
    for (auto& r : raw) {
      if (r.id >= 0) {
        segs.push_back(std::move(r));
        continue;
      }
      if (!normalizer.empty()) r.text = normalizer[0].apply(r.text);
      split_added(r, true, segs);
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<hf::Piece> pieces;
    for (const auto& sg : segs) {
      if (sg.id >= 0) {
        ids.push_back(sg.id);
        continue;
      }
      pieces.assign(1, {sg.text, sg.at_start});
      if (!pre_tokenizer.empty()) pre_tokenizer[0].apply(pieces);
      for (const auto& p : pieces) model->tokenize(p.text, ids);
    }
    return ids;
  }
};

HfTokenizer::HfTokenizer() : impl_(std::make_unique<Impl>()) {}
HfTokenizer::~HfTokenizer() = default;

namespace {

AddedToken parse_added(const json& j, const hf::JsonAt& at) {
  RLHF_CHECK(j.is_object() && j.contains("id") && j.contains("content") &&
                 j["content"].is_string() && !j["content"].get<std::string>().empty(),
             "{}: expected {{\"id\": ..., \"content\": \"...\"}}, got {}", at.str(), j.dump());
  AddedToken a;
  a.id = j["id"].get<int32_t>();
  a.content = j["content"].get<std::string>();
  a.special = j.value("special", false);
  a.lstrip = j.value("lstrip", false);
  a.rstrip = j.value("rstrip", false);
  a.single_word = j.value("single_word", false);
  a.normalized = j.value("normalized", !a.special);
  return a;
}

// tokenizer_config.json's bos_token / eos_token / pad_token: a string, an AddedToken object
// ({"content": ...}) or null. Returns "" when absent or null.
std::string config_token(const json& cfg, const char* key, const std::string& file) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  RLHF_CHECK(v.is_object() && v.contains("content") && v["content"].is_string(),
             "{}: '{}' must be a string, an object with \"content\", or null; got {}", file, key,
             v.dump());
  return v["content"].get<std::string>();
}

}  // namespace

std::unique_ptr<HfTokenizer> HfTokenizer::load(const std::string& path) {
  std::error_code ec;
  const fs::path p = fs::absolute(path, ec).lexically_normal();
  const bool folder = fs::is_directory(p, ec);
  const fs::path dir = folder ? p : p.parent_path();
  const std::string tj = (folder ? p / "tokenizer.json" : p).string();
  RLHF_CHECK(fs::exists(tj, ec), "hf tokenizer: '{}' does not exist", tj);
  std::unique_ptr<HfTokenizer> tok(new HfTokenizer());
  Impl& m = *tok->impl_;
  m.spec = p.string();
  m.json_path = tj;
  m.files = {tj};
  const std::string bytes = read_file_bytes(tj);
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception& e) {
    throw Error(fmt::format("hf tokenizer: '{}' is not valid JSON: {}", tj, e.what()));
  }
  const hf::JsonAt root{tj, ""};
  RLHF_CHECK(j.is_object() && j.contains("model"), "{}: not a tokenizer.json (no 'model')", tj);
  m.model = std::make_unique<hf::BpeModel>(j["model"], root.at("model"));
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    m.normalizer.push_back(hf::parse_normalizer(j["normalizer"], root.at("normalizer")));
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
    m.pre_tokenizer.push_back(hf::parse_pre_tokenizer(j["pre_tokenizer"], root.at("pre_tokenizer")));
  m.post = hf::parse_post_processor(j.value("post_processor", json()), root.at("post_processor"));
  if (j.contains("decoder") && !j["decoder"].is_null())
    m.decoder.push_back(hf::parse_decoder(j["decoder"], root.at("decoder")));
  m.vocab = m.model->max_id() + 1;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    const json& list = j["added_tokens"];
    for (size_t i = 0; i < list.size(); ++i) {
      AddedToken a = parse_added(list[i], root.at("added_tokens").at(i));
      m.vocab = std::max(m.vocab, a.id + 1);
      m.added_first_byte[static_cast<unsigned char>(a.content[0])] = true;
      m.added.push_back(std::move(a));
    }
  }
  std::stable_sort(m.added.begin(), m.added.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (size_t i = 0; i < m.added.size(); ++i) m.added_by_id[m.added[i].id] = i;

  // BOS / EOS / PAD.
  const std::string cfg_path = (dir / "tokenizer_config.json").string();
  RLHF_CHECK(fs::exists(cfg_path, ec), "hf tokenizer: '{}' is missing: it names the BOS/EOS/PAD "
             "tokens beside '{}' (copy it from the model's folder)", cfg_path, tj);
  m.files.push_back(cfg_path);
  const json cfg = read_json_file(cfg_path);
  auto resolve = [&](const char* key) {
    const std::string t = config_token(cfg, key, cfg_path);
    if (t.empty()) return -1;
    const int32_t id = m.token_id(t);
    RLHF_CHECK(id >= 0, "{}: {} '{}' is not a token of '{}'", cfg_path, key, t, tj);
    return id;
  };
  m.bos = resolve("bos_token");
  m.eos = resolve("eos_token");
  m.pad = resolve("pad_token");
  RLHF_CHECK(m.eos >= 0, "{}: no eos_token: the end-of-sequence token cannot be guessed; set "
             "\"eos_token\" (e.g. \"<|im_end|>\" or \"<|eot_id|>\" for a chat model)", cfg_path);
  if (m.pad < 0) m.pad = m.eos;
  m.stops = {m.eos};
  const std::string gen_path = (dir / "generation_config.json").string();
  if (fs::exists(gen_path, ec)) {
    m.files.push_back(gen_path);
    const json g = read_json_file(gen_path);
    if (g.contains("eos_token_id") && !g["eos_token_id"].is_null()) {
      const json& e = g["eos_token_id"];
      const json list = e.is_array() ? e : json::array({e});
      for (const auto& v : list) {
        RLHF_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < m.vocab,
                   "{}: eos_token_id {} is not an id in 0..{}", gen_path, v.dump(), m.vocab - 1);
        if (std::find(m.stops.begin(), m.stops.end(), v.get<int32_t>()) == m.stops.end())
          m.stops.push_back(v.get<int32_t>());
      }
    }
  }
  uint64_t h = detail::fnv1a64(bytes.data(), bytes.size(), detail::fnv1a64("hf", 2));
  const int32_t ids[3] = {m.bos, m.eos, m.pad};
  h = detail::fnv1a64(ids, sizeof(ids), h);
  m.identity = "hf:" + detail::hex16(h);
  return tok;
}

std::vector<int32_t> HfTokenizer::encode(const std::string& text) const {
  return impl_->encode(text);
}

std::vector<int32_t> HfTokenizer::encode_with_special_tokens(const std::string& text) const {
  return impl_->post.apply(impl_->encode(text));
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const { return impl_->decode(ids, false); }

std::string HfTokenizer::decode_with_special_tokens(const std::vector<int32_t>& ids) const {
  return impl_->decode(ids, true);
}

std::string HfTokenizer::Impl::decode(const std::vector<int32_t>& ids, bool keep_special) const {
  const Impl& m = *this;
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    auto a = m.added_by_id.find(id);
    if (a != m.added_by_id.end()) {
      if (keep_special || !m.added[a->second].special) toks.push_back(m.added[a->second].content);
      continue;
    }
    const std::string* t = m.model->token_of(id);
    RLHF_CHECK(t != nullptr, "hf tokenizer: decode got id {} at position {}, expected a token id "
               "in 0..{}", id, i, m.vocab - 1);
    toks.push_back(*t);
  }
  if (!m.decoder.empty()) toks = m.decoder[0].apply(std::move(toks));
  else if (toks.size() > 1) {  // huggingface joins with spaces when there is no decoder
    std::string all = toks[0];
    for (size_t i = 1; i < toks.size(); ++i) all += " " + toks[i];
    toks = {all};
  }
  std::string out;
  for (const auto& t : toks) out += t;
  return out;
}

int32_t HfTokenizer::vocab_size() const { return impl_->vocab; }
int32_t HfTokenizer::bos_id() const { return impl_->bos; }
int32_t HfTokenizer::eos_id() const { return impl_->eos; }
int32_t HfTokenizer::pad_id() const { return impl_->pad; }
std::vector<int32_t> HfTokenizer::stop_ids() const { return impl_->stops; }
int32_t HfTokenizer::token_id(const std::string& t) const { return impl_->token_id(t); }
std::string HfTokenizer::identity() const { return impl_->identity; }
std::string HfTokenizer::spec() const { return impl_->spec; }
std::vector<std::string> HfTokenizer::files() const { return impl_->files; }

}  // namespace rlhf
