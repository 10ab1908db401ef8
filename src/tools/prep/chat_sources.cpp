// chat_sources.cpp — rows as conversations for a chat template (sources.h, read_chat_*).
#include <nlohmann/json.hpp>

#include "common/chat/chat_encode.h"
#include "common/core/check.h"
#include "tools/prep/sources.h"

namespace rlhf {

namespace {

using json = nlohmann::ordered_json;

json turn(const char* role, const std::string& text) { return {{"role", role}, {"content", text}}; }

bool is_assistant(const json& m) { return m["role"] == "assistant"; }

// A messages list under key; false (row skipped and counted) unless it is a valid one.
bool get_messages(const json& j, const std::string& key, PrepReport& rep, const std::string& w,
                  json* out) {
  if (!j.is_object() || !j.contains(key)) {
    rep.skip("missing_field", w, fmt::format("field '{}' missing", key));
    return false;
  }
  try {
    check_messages(j[key]);
  } catch (const Error& e) {
    rep.skip("bad_messages", w, fmt::format("field '{}': {}", key, e.what()));
    return false;
  }
  *out = j[key];
  return true;
}

// An hh-rlhf transcript ("\n\nHuman: ...\n\nAssistant: ...") as messages; empty when it has no
// markers. A turn's text is what follows its marker, one leading space removed.
json hh_messages(const std::string& t) {
  static const std::string kHuman = "\n\nHuman:", kAsst = "\n\nAssistant:";
  json out = json::array();
  size_t pos = std::min(t.find(kHuman), t.find(kAsst));
  while (pos != std::string::npos) {
    const bool human = t.compare(pos, kHuman.size(), kHuman) == 0;
    const size_t start = pos + (human ? kHuman.size() : kAsst.size());
    const size_t next = std::min(t.find(kHuman, start), t.find(kAsst, start));
    std::string text = t.substr(start, next == std::string::npos ? std::string::npos : next - start);
    if (!text.empty() && text[0] == ' ') text.erase(0, 1);
    out.push_back(turn(human ? "user" : "assistant", text));
    pos = next;
  }
  return out;
}

// Two conversations that share a prompt: the longest common prefix of messages is the prompt,
// the rests are the replies. False when a rest holds no assistant turn.
bool split_shared(const json& a, const json& b, json* prompt, json* ra, json* rb) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  // A shared final assistant turn belongs to both replies, not to the prompt.
  while (n > 0 && is_assistant(a[n - 1]) && (n == a.size() || n == b.size())) --n;
  *prompt = json::array();
  *ra = json::array();
  *rb = json::array();
  for (size_t i = 0; i < a.size(); ++i) (i < n ? *prompt : *ra).push_back(a[i]);
  for (size_t i = n; i < b.size(); ++i) rb->push_back(b[i]);
  auto has_turn = [](const json& r) {
    for (const auto& m : r)
      if (is_assistant(m)) return true;
    return false;
  };
  return !prompt->empty() && has_turn(*ra) && has_turn(*rb);
}

void messages_ranked(const PrepOptions& o, const std::string& file, PrepReport& rep,
                     std::vector<ChatGroup>* out) {
  for_each_json(file, rep, [&](const std::string& w, const json& j) {
    ChatGroup g;
    g.where = w;
    if (has_ranked_list(j)) {
      if (!get_messages(j, o.prompt_key, rep, w, &g.prompt)) return;
      const json* rs = ranked_list(j, rep, w);
      if (!rs) return;
      for (size_t k = 0; k < rs->size(); ++k) {
        json r;
        if (!get_messages(json{{"response", (*rs)[k]}}, "response", rep, fmt::format("{} (response {})", w, k), &r))
          return;
        g.responses.push_back(r);
      }
      if (!get_ranks(j, rs->size(), rep, w, &g.ranks)) return;
      out->push_back(std::move(g));
      return;
    }
    json c, r;
    if (!get_messages(j, o.chosen_key, rep, w, &c) || !get_messages(j, o.rejected_key, rep, w, &r)) return;
    g.ranks = {0, 1};
    if (j.contains(o.prompt_key)) {
      if (!get_messages(j, o.prompt_key, rep, w, &g.prompt)) return;
      g.responses = {c, r};
    } else {
      g.responses.resize(2);
      if (!split_shared(c, r, &g.prompt, &g.responses[0], &g.responses[1])) {
        rep.skip("prompt_mismatch", w, fmt::format("'{}' and '{}' share no prompt followed by an "
                                                   "assistant turn in each", o.chosen_key, o.rejected_key));
        return;
      }
    }
    out->push_back(std::move(g));
  });
}

void hh_conversations(const PrepOptions& o, const std::string& file, PrepReport& rep,
                      std::vector<ChatRow>* sft, std::vector<ChatGroup>* ranked) {
  for_each_json(file, rep, [&](const std::string& w, const json& j) {
    std::string chosen, rejected;
    if (!get_string(j, o.chosen_key, rep, w, &chosen)) return;
    const json c = hh_messages(chosen);
    if (c.empty()) {
      rep.skip("no_assistant_turn", w, "transcript has no \"\\n\\nHuman:\" / \"\\n\\nAssistant:\" turns");
      return;
    }
    if (sft) {
      sft->push_back({c, w});
      return;
    }
    if (!get_string(j, o.rejected_key, rep, w, &rejected)) return;
    ChatGroup g;
    g.where = w;
    g.ranks = {0, 1};
    g.responses.resize(2);
    if (!split_shared(c, hh_messages(rejected), &g.prompt, &g.responses[0], &g.responses[1])) {
      rep.skip("prompt_mismatch", w, "chosen and rejected share no prompt followed by an Assistant turn in each");
      return;
    }
    ranked->push_back(std::move(g));
  });
}

void check_chat_inputs(const PrepOptions& o) {
  RLHF_CHECK(!o.inputs.empty(), "rlhf_prep: no input files (--in FILE, repeatable)");
  RLHF_CHECK(o.chat(), "rlhf_prep: conversations need a chat template (--chat-template)");
}

PrepOptions as_jsonl(const PrepOptions& o) {
  PrepOptions p = o;
  p.format = SourceFormat::Jsonl;
  return p;
}

}  // namespace

std::vector<ChatRow> read_chat_sft_rows(const PrepOptions& o, PrepReport& rep) {
  check_chat_inputs(o);
  std::vector<ChatRow> out;
  if (o.format == SourceFormat::Jsonl) {
    for (auto& p : read_sft_rows(as_jsonl(o), rep))
      out.push_back({json::array({turn("user", p.prompt), turn("assistant", p.response)}), p.where});
    return out;
  }
  for (const auto& file : o.inputs) {
    switch (o.format) {
      case SourceFormat::Messages:
        for_each_json(file, rep, [&](const std::string& w, const json& j) {
          json m;
          if (get_messages(j, o.messages_key, rep, w, &m)) out.push_back({m, w});
        });
        break;
      case SourceFormat::OasstTree: oasst_conversations(file, rep, &out, nullptr); break;
      case SourceFormat::HhRlhf: hh_conversations(o, file, rep, &out, nullptr); break;
      case SourceFormat::Jsonl: break;
    }
  }
  return out;
}

std::vector<ChatGroup> read_chat_ranked_rows(const PrepOptions& o, PrepReport& rep) {
  check_chat_inputs(o);
  std::vector<ChatGroup> out;
  if (o.format == SourceFormat::Jsonl) {
    for (auto& g : read_ranked_rows(as_jsonl(o), rep)) {
      ChatGroup c{json::array({turn("user", g.prompt)}), {}, g.ranks, g.where};
      for (const auto& r : g.responses) c.responses.push_back(json::array({turn("assistant", r)}));
      out.push_back(std::move(c));
    }
    return out;
  }
  for (const auto& file : o.inputs) {
    switch (o.format) {
      case SourceFormat::Messages: messages_ranked(o, file, rep, &out); break;
      case SourceFormat::OasstTree: oasst_conversations(file, rep, nullptr, &out); break;
      case SourceFormat::HhRlhf: hh_conversations(o, file, rep, nullptr, &out); break;
      case SourceFormat::Jsonl: break;
    }
  }
  return out;
}

std::vector<ChatRow> read_chat_prompt_rows(const PrepOptions& o, PrepReport& rep) {
  check_chat_inputs(o);
  std::vector<ChatRow> out;
  if (o.format == SourceFormat::Jsonl) {
    std::vector<std::string> wheres;
    auto rows = read_prompt_rows(as_jsonl(o), rep, &wheres);
    for (size_t i = 0; i < rows.size(); ++i) out.push_back({json::array({turn("user", rows[i])}), wheres[i]});
    return out;
  }
  if (o.format == SourceFormat::Messages) {
    for (const auto& file : o.inputs)
      for_each_json(file, rep, [&](const std::string& w, const json& j) {
        json m;
        const std::string& key = j.is_object() && j.contains(o.prompt_key) ? o.prompt_key : o.messages_key;
        if (get_messages(j, key, rep, w, &m)) out.push_back({m, w});
      });
    return out;
  }
  // oasst-tree / hh-rlhf: each conversation up to its last assistant turn.
  for (auto& row : read_chat_sft_rows(o, rep)) {
    json& m = row.messages;
    while (!m.empty() && !is_assistant(m.back())) m.erase(m.size() - 1);
    if (!m.empty()) m.erase(m.size() - 1);
    if (m.empty()) {
      rep.skip("no_assistant_turn", row.where, "conversation has no assistant turn to cut the prompt at");
      continue;
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace rlhf
