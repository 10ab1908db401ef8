#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "tools/prep/sources.h"

namespace rlhf {

namespace {

using nlohmann::json;

struct Turn {
  bool human;
  std::string text;
};

std::string format_conversation(const std::vector<Turn>& turns) {
  std::string s;
  for (const auto& t : turns) s += (t.human ? "\n\nHuman: " : "\n\nAssistant: ") + t.text;
  return s + "\n\nAssistant:";
}

bool kept_reply(const json& m) {
  return m.value("role", "") == "assistant" && m.contains("deleted") && m["deleted"] == false &&
         m.contains("synthetic") && m["synthetic"] == false && m.contains("rank") &&
         m["rank"].is_number_integer();
}

struct Walker {
  std::string where;
  PrepReport& rep;
  std::vector<TextPair>* sft;
  std::vector<TextGroup>* ranked;

  void visit(const json& m, std::vector<Turn>& path) {
    RLHF_CHECK(m.is_object() && m.contains("text") && m["text"].is_string() &&
                   m.contains("role") && m["role"].is_string(),
               "message {}: no string 'text'/'role'", m.is_object() ? m.value("message_id", "?") : "?");
    bool human = m["role"] == "prompter";
    path.push_back({human, m["text"].get<std::string>()});
    const json& replies = m.contains("replies") ? m["replies"] : json::array();
    RLHF_CHECK(replies.is_array(), "message {}: 'replies' is not an array", m.value("message_id", "?"));
    if (human) {
      TextGroup g;
      g.where = fmt::format("{} (message {})", where, m.value("message_id", "?"));
      for (const auto& r : replies) {
        if (!kept_reply(r)) continue;
        RLHF_CHECK(r.contains("text") && r["text"].is_string(), "message {}: reply without 'text'",
                   r.value("message_id", "?"));
        g.responses.push_back(" " + r["text"].get<std::string>());
        g.ranks.push_back(r["rank"].get<int32_t>());
      }
      if (!g.responses.empty()) {
        g.prompt = format_conversation(path);
        if (sft) {
          auto it = std::find(g.ranks.begin(), g.ranks.end(), 0);
          if (it != g.ranks.end())
            sft->push_back({g.prompt, g.responses[it - g.ranks.begin()], g.where});
          else
            rep.add("oasst_no_rank0_reply");
        }
        if (ranked && g.responses.size() >= 2) ranked->push_back(std::move(g));
      }
    }
    for (const auto& r : replies) visit(r, path);
    path.pop_back();
  }
};

}  // namespace

void oasst_rows(const std::string& file, PrepReport& rep, std::vector<TextPair>* sft,
                std::vector<TextGroup>* ranked) {
  for_each_json(file, rep, [&](const std::string& w, const json& tree) {
    if (!tree.is_object() || !tree.contains("prompt") || !tree["prompt"].is_object()) {
      rep.skip("missing_field", w, "message tree without a 'prompt' object");
      return;
    }
    // Collect into temporaries so a structurally bad tree contributes nothing.
    std::vector<TextPair> s;
    std::vector<TextGroup> r;
    Walker wk{w, rep, sft ? &s : nullptr, ranked ? &r : nullptr};
    std::vector<Turn> path;
    try {
      wk.visit(tree["prompt"], path);
    } catch (const Error& e) {
      rep.skip("bad_tree", w, e.what());
      return;
    }
    if (sft) sft->insert(sft->end(), s.begin(), s.end());
    if (ranked) ranked->insert(ranked->end(), r.begin(), r.end());
  });
}

}  // namespace rlhf
