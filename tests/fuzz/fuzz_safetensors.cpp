// Fuzzes the safetensors reader (header length, JSON header, dtypes, shapes, offsets against the
// file size) and the Hugging Face config.json mapping (the input parsed as JSON).
#include <nlohmann/json.hpp>

#include "common/io/hf_config.h"
#include "common/io/safetensors.h"
#include "fuzz_util.h"

using namespace rlhf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch("model.safetensors", data, size);
  fuzz::expect_clean([&] { read_safetensors(path); });
  const auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (!j.is_discarded()) {
    fuzz::expect_clean([&] { config_from_hf(j); });
    fuzz::expect_clean([&] { hf_is_sequence_classifier(j, "config.json"); });
  }
  return 0;
}
