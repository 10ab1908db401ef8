#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "tools/prep/sources.h"

namespace rlhf {

static const std::string kAssistant = "\n\nAssistant:";

bool hh_split(const std::string& t, std::string* prompt, std::string* response) {
  size_t pos = t.rfind(kAssistant);
  if (pos == std::string::npos) return false;
  *prompt = t.substr(0, pos + kAssistant.size());
  *response = t.substr(pos + kAssistant.size());
  return true;
}

bool hh_split_pair(const std::string& chosen, const std::string& rejected, std::string* prompt,
                   std::string* chosen_resp, std::string* rejected_resp, bool* realigned) {
  std::string pc, pr;
  *realigned = false;
  if (!hh_split(chosen, &pc, chosen_resp) || !hh_split(rejected, &pr, rejected_resp)) return false;
  if (pc == pr) {
    *prompt = pc;
    return true;
  }
  size_t common = 0;
  while (common < chosen.size() && common < rejected.size() && chosen[common] == rejected[common])
    ++common;
  std::string shared = chosen.substr(0, common);
  size_t pos = shared.rfind(kAssistant);
  if (pos == std::string::npos) return false;
  size_t cut = pos + kAssistant.size();
  *prompt = chosen.substr(0, cut);
  *chosen_resp = chosen.substr(cut);
  *rejected_resp = rejected.substr(cut);
  *realigned = true;
  return true;
}

}  // namespace rlhf
