// oasst.cpp — Open Assistant message trees as conversations (sources.h, oasst-tree).
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "tools/prep/sources.h"

namespace rlhf {

namespace {

using json = nlohmann::ordered_json;

bool flag(const json& m, const char* key) { return m.contains(key) && m[key] == true; }

// A reply that counts: deleted == false, synthetic == false, rank given (OASST's own rule).
bool kept_reply(const json& m) {
  return m.value("role", "") == "assistant" && m.contains("deleted") && m["deleted"] == false &&
         m.contains("synthetic") && m["synthetic"] == false && m.contains("rank") &&
         m["rank"].is_number_integer();
}

const json& replies_of(const json& m) {
  static const json none = json::array();
  if (!m.contains("replies")) return none;
  RLHF_CHECK(m["replies"].is_array(), "message {}: 'replies' is not an array", m.value("message_id", "?"));
  return m["replies"];
}

json message_of(const json& m) {
  RLHF_CHECK(m.is_object() && m.contains("text") && m["text"].is_string() && m.contains("role") &&
                 m["role"].is_string(),
             "message {}: no string 'text'/'role'", m.is_object() ? m.value("message_id", "?") : "?");
  const std::string role = m["role"].get<std::string>();
  RLHF_CHECK(role == "prompter" || role == "assistant", "message {}: role '{}' is neither prompter nor assistant",
             m.value("message_id", "?"), role);
  return {{"role", role == "prompter" ? "user" : "assistant"}, {"content", m["text"]}};
}

struct Walker {
  std::string where;
  PrepReport& rep;

  std::string at(const json& m) const { return fmt::format("{} (message {})", where, m.value("message_id", "?")); }

  // Ranked groups: every prompter message with >= 2 kept replies, anywhere in the tree.
  void groups(const json& m, json& path, std::vector<ChatGroup>* out) {
    path.push_back(message_of(m));
    if (m["role"] == "prompter") {
      ChatGroup g;
      g.where = at(m);
      for (const auto& r : replies_of(m)) {
        if (!kept_reply(r)) continue;
        g.responses.push_back(json::array({message_of(r)}));
        g.ranks.push_back(r["rank"].get<int32_t>());
      }
      if (g.responses.size() >= 2) {
        g.prompt = path;
        out->push_back(std::move(g));
      }
    }
    for (const auto& r : replies_of(m)) groups(r, path, out);
    path.erase(path.size() - 1);
  }

  // SFT threads along the best replies; true when a thread was emitted below m.
  bool threads(const json& m, json& path, std::vector<ChatRow>* out) {
    path.push_back(message_of(m));
    bool emitted = false;
    if (m["role"] == "prompter") {
      const json* best = nullptr;
      bool any = false;
      for (const auto& r : replies_of(m)) {
        if (!kept_reply(r)) continue;
        any = true;
        if (r["rank"] == 0 && !best) best = &r;
      }
      if (best) emitted = threads(*best, path, out);
      else if (any) rep.add("oasst_no_best_reply");
    } else {
      for (const auto& r : replies_of(m))
        if (r.value("role", "") == "prompter" && !flag(r, "deleted")) emitted = threads(r, path, out) || emitted;
      if (!emitted) {
        out->push_back({path, at(m)});
        emitted = true;
      }
    }
    path.erase(path.size() - 1);
    return emitted;
  }
};

}  // namespace

void oasst_conversations(const std::string& file, PrepReport& rep, std::vector<ChatRow>* threads,
                         std::vector<ChatGroup>* groups) {
  for_each_json(file, rep, [&](const std::string& w, const json& tree) {
    if (!tree.is_object() || !tree.contains("prompt") || !tree["prompt"].is_object()) {
      rep.skip("missing_field", w, "message tree without a 'prompt' object");
      return;
    }
    // Collect into temporaries so a structurally bad tree contributes nothing.
    std::vector<ChatRow> t;
    std::vector<ChatGroup> g;
    Walker wk{w, rep};
    json path = json::array();
    try {
      if (threads) wk.threads(tree["prompt"], path, &t);
      if (groups) wk.groups(tree["prompt"], path, &g);
    } catch (const Error& e) {
      rep.skip("bad_tree", w, e.what());
      return;
    }
    if (threads) threads->insert(threads->end(), t.begin(), t.end());
    if (groups) groups->insert(groups->end(), g.begin(), g.end());
  });
}

}  // namespace rlhf
