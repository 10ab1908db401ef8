// hf_bpe.h — the BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}):
// vocab, merges (either "a b" strings or ["a", "b"] pairs; rank = position), unk_token +
// fuse_unk, byte_fallback (<0xNN> tokens), continuing_subword_prefix, end_of_word_suffix and
// ignore_merges. tokenize() follows huggingface's merge_word/merge_all: one symbol per character,
// then the lowest-rank adjacent pair is merged first (leftmost on ties), O(n log n) per word.
// Words up to 256 bytes are cached (sharded locks; safe from many threads).
#pragma once
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/tokenizer/hf_components.h"

namespace rlhf::hf {

class BpeModel {
 public:
  BpeModel(const nlohmann::json& model, const JsonAt& at);
  // Appends the ids of one pre-tokenized word. A character with no token, no byte fallback and
  // no unk_token is dropped, as huggingface does; dropped() counts those characters.
  void tokenize(const std::string& word, std::vector<int32_t>& out) const;
  int32_t id_of(const std::string& token) const;  // -1 when absent
  const std::string* token_of(int32_t id) const;  // nullptr when absent
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  uint64_t dropped() const;

 private:
  void merge_word(const std::string& word, std::vector<int32_t>& out) const;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged)
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> tokens (byte_fallback), -1 when absent
  int32_t unk_ = -1;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
  static constexpr size_t kShards = 16;
  mutable std::array<std::mutex, kShards> mu_;
  mutable std::array<std::unordered_map<std::string, std::vector<int32_t>>, kShards> cache_;
  mutable std::array<uint64_t, kShards> dropped_{};
};

}  // namespace rlhf::hf
