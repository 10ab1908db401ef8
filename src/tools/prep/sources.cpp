#include "tools/prep/sources.h"

#include <nlohmann/json.hpp>

#include "common/core/check.h"

namespace rlhf {

using json = nlohmann::ordered_json;

void for_each_json(const std::string& file, PrepReport& rep,
                   const std::function<void(const std::string&, const json&)>& fn) {
  for_each_line(file, rep, [&](int64_t line, const std::string& text) {
    if (text.find_first_not_of(" \t") == std::string::npos) return;
    rep.add("rows_read");
    std::string w = where(file, line);
    if (!valid_utf8(text)) {  // checked before JSON parsing, which would also reject it
      rep.skip("invalid_utf8", w, "line is not valid UTF-8");
      return;
    }
    json j;
    try {
      j = json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      rep.skip("malformed_json", w, fmt::format("malformed JSON: {}", e.what()));
      return;
    }
    fn(w, j);
  });
}

// Reads a string field; false (row skipped and counted) if missing or not a string.
bool get_string(const json& j, const std::string& key, PrepReport& rep, const std::string& w,
                std::string* out) {
  // A conversation read as plain rows: say the option that reads it (issue 33).
  const char* conversation = "; the row is a conversation (a list of {role, content} messages): "
                             "prepare it with --format messages (and --chat-template auto)";
  if (!j.is_object() || !j.contains(key)) {
    rep.skip("missing_field", w, fmt::format("field '{}' missing{}", key,
                                             j.is_object() && j.contains("messages") ? conversation : ""));
    return false;
  }
  if (!j[key].is_string()) {
    rep.skip("bad_field_type", w, fmt::format("field '{}' is {}, expected a string{}", key, j[key].type_name(),
                                              j[key].is_array() ? conversation : ""));
    return false;
  }
  *out = j[key].get<std::string>();
  return true;
}

bool has_ranked_list(const json& j) { return j.contains("responses") || j.contains("ranks"); }

const json* ranked_list(const json& j, PrepReport& rep, const std::string& w) {
  if (!j.contains("responses") || !j.contains("ranks")) {
    rep.skip("missing_field", w, "'responses' and 'ranks' must come together");
    return nullptr;
  }
  if (!j["responses"].is_array()) {
    rep.skip("bad_field_type", w, "field 'responses' is not an array");
    return nullptr;
  }
  return &j["responses"];
}

bool get_ranks(const json& j, size_t n, PrepReport& rep, const std::string& w,
               std::vector<int32_t>* ranks) {
  const json& rk = j["ranks"];
  if (!rk.is_array() || rk.size() != n) {
    rep.skip("bad_ranks", w, fmt::format("'ranks' must be an array of {} integers", n));
    return false;
  }
  for (const auto& r : rk) {
    if (!r.is_number_integer() || r.get<int64_t>() < 0 || r.get<int64_t>() > 1000000) {
      rep.skip("bad_ranks", w, fmt::format("rank {} is not a non-negative integer", r.dump()));
      return false;
    }
    ranks->push_back(r.get<int32_t>());
  }
  return true;
}

namespace {

void jsonl_ranked(const PrepOptions& o, const std::string& file, PrepReport& rep,
                  std::vector<TextGroup>* out) {
  for_each_json(file, rep, [&](const std::string& w, const json& j) {
    TextGroup g;
    g.where = w;
    if (!get_string(j, o.prompt_key, rep, w, &g.prompt)) return;
    if (has_ranked_list(j)) {
      const json* rs = ranked_list(j, rep, w);
      if (!rs) return;
      for (const auto& r : *rs) {
        if (!r.is_string()) {
          rep.skip("bad_field_type", w, fmt::format("a response is {}, expected a string",
                                                    r.type_name()));
          return;
        }
        g.responses.push_back(r.get<std::string>());
      }
      if (!get_ranks(j, rs->size(), rep, w, &g.ranks)) return;
    } else {
      std::string c, r;
      if (!get_string(j, o.chosen_key, rep, w, &c) || !get_string(j, o.rejected_key, rep, w, &r))
        return;
      g.responses = {c, r};
      g.ranks = {0, 1};
    }
    out->push_back(std::move(g));
  });
}

void hh_rows(const PrepOptions& o, const std::string& file, PrepReport& rep,
             std::vector<TextPair>* sft, std::vector<TextGroup>* ranked) {
  for_each_json(file, rep, [&](const std::string& w, const json& j) {
    std::string chosen, rejected;
    if (!get_string(j, o.chosen_key, rep, w, &chosen)) return;
    if (sft) {
      TextPair p;
      p.where = w;
      if (!hh_split(chosen, &p.prompt, &p.response)) {
        rep.skip("no_assistant_turn", w, "transcript has no \"\\n\\nAssistant:\" turn");
        return;
      }
      sft->push_back(std::move(p));
      return;
    }
    if (!get_string(j, o.rejected_key, rep, w, &rejected)) return;
    TextGroup g;
    g.where = w;
    g.responses.resize(2);
    bool realigned = false;
    if (!hh_split_pair(chosen, rejected, &g.prompt, &g.responses[0], &g.responses[1], &realigned)) {
      rep.skip("prompt_mismatch", w,
               "chosen and rejected do not share a prompt ending in \"\\n\\nAssistant:\"");
      return;
    }
    if (realigned) rep.add("realigned_split");
    g.ranks = {0, 1};
    ranked->push_back(std::move(g));
  });
}

void check_inputs(const PrepOptions& o) {
  RLHF_CHECK(!o.inputs.empty(), "rlhf_prep: no input files (--in FILE, repeatable)");
  RLHF_CHECK(o.format == SourceFormat::Jsonl || o.format == SourceFormat::HhRlhf,
             "rlhf_prep: --format {} holds conversations: it needs a chat template "
             "(--chat-template auto|NAME|FILE.jinja)", source_format_name(o.format));
}

}  // namespace

std::vector<TextPair> read_sft_rows(const PrepOptions& o, PrepReport& rep) {
  check_inputs(o);
  std::vector<TextPair> out;
  for (const auto& file : o.inputs) {
    switch (o.format) {
      case SourceFormat::Jsonl:
        for_each_json(file, rep, [&](const std::string& w, const json& j) {
          TextPair p;
          p.where = w;
          if (!get_string(j, o.prompt_key, rep, w, &p.prompt)) return;
          if (!get_string(j, o.response_key, rep, w, &p.response)) return;
          out.push_back(std::move(p));
        });
        break;
      case SourceFormat::HhRlhf: hh_rows(o, file, rep, &out, nullptr); break;
      default: break;  // check_inputs refused the conversational formats
    }
  }
  return out;
}

std::vector<TextGroup> read_ranked_rows(const PrepOptions& o, PrepReport& rep) {
  check_inputs(o);
  std::vector<TextGroup> out;
  for (const auto& file : o.inputs) {
    switch (o.format) {
      case SourceFormat::Jsonl: jsonl_ranked(o, file, rep, &out); break;
      case SourceFormat::HhRlhf: hh_rows(o, file, rep, nullptr, &out); break;
      default: break;
    }
  }
  return out;
}

std::vector<std::string> read_prompt_rows(const PrepOptions& o, PrepReport& rep,
                                          std::vector<std::string>* wheres) {
  std::vector<std::string> out;
  check_inputs(o);
  if (o.format != SourceFormat::Jsonl) {  // conversation prompts of the SFT rows
    for (auto& p : read_sft_rows(o, rep)) {
      out.push_back(std::move(p.prompt));
      if (wheres != nullptr) wheres->push_back(std::move(p.where));
    }
    return out;
  }
  check_inputs(o);
  for (const auto& file : o.inputs) {
    for_each_json(file, rep, [&](const std::string& w, const json& j) {
      std::string p;
      if (j.is_string()) p = j.get<std::string>();
      else if (!get_string(j, o.prompt_key, rep, w, &p)) return;
      out.push_back(std::move(p));
      if (wheres != nullptr) wheres->push_back(w);
    });
  }
  return out;
}

}  // namespace rlhf
