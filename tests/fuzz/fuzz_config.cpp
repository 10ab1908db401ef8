// Fuzzes the YAML config loader of the three stages. The input is the config file; lines after a
// line "#SETS" are --set overrides (KEY=VALUE), so the override parser is fuzzed too.
#include <string>
#include <vector>

#include "common/train/config.h"
#include "dpo/dpo_config.h"
#include "ppo/ppo_config.h"
#include "rm/rm_config.h"
#include "sft/sft_config.h"
#include "fuzz_util.h"

using namespace rlhf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  const size_t mark = text.find("\n#SETS\n");
  if (mark != std::string::npos) {
    size_t pos = mark + 7;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      sets.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    text.resize(mark + 1);
  }
  const std::string path = fuzz::write_scratch("config.yaml", text);
  for (const StageSpec* s : {&sft_stage(), &rm_stage(), &ppo_stage(), &dpo_stage()})
    fuzz::expect_clean([&] { dump_config(load_config(*s, path, sets)); });
  return 0;
}
