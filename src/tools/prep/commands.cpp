#include "tools/prep/commands.h"

#include <filesystem>
#include <iostream>

#include "common/chat/chat_encode.h"
#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/data/data.h"
#include "tools/prep/sources.h"

namespace rlhf {

namespace {

std::string source_name(const PrepOptions& o) { return source_format_name(o.format); }

void check_out(const PrepOptions& o) {
  RLHF_CHECK(!o.out.empty(), "rlhf_prep: --out FILE.h5 is required");
  for (const auto& in : o.inputs) {
    RLHF_CHECK(!same_file(in, o.out), "rlhf_prep: --out {} is also an input (--in {}): writing it would replace the "
               "source; choose another output path", o.out, in);
  }
}

// A chat prep run's template and encoder (null for plain rows).
struct ChatPrep {
  ChatPrep(const PrepOptions& o, const Tokenizer& tok)
      : tpl(ChatTemplate::select(o.chat_template, tok.spec())), enc(tpl, tok) {}
  ChatTemplate tpl;
  ChatEncoder enc;
};

// The frame of every prep command: tokenizer, chat template (when chosen) and report,
// `fill(tok, chat, rep, data)`, metadata, the "some row survived" check, save, report.
template <class Data, class Fill>
PrepReport write_prep(const PrepOptions& o, const char* cmd, const std::string& source, Fill fill) {
  check_out(o);
  auto tok = load_tokenizer(o.tokenizer);
  std::unique_ptr<ChatPrep> chat;
  if (o.chat()) chat = std::make_unique<ChatPrep>(o, *tok);
  PrepReport rep(o.strict);
  Data d;
  fill(*tok, chat.get(), rep, d);
  d.meta = make_meta(*tok, source, rep);
  if (chat) {
    d.meta.chat_template = chat->tpl.source();
    d.meta.chat_template_name = chat->tpl.name();
    d.meta.end_of_turn = chat->enc.end_of_turn();
  }
  RLHF_CHECK(rep.get("rows_written") > 0, "rlhf_prep {}: no row survived ({} read); report:\n{}",
             cmd, rep.get("rows_read"), rep.summary());
  d.save(o.out);
  std::cerr << fmt::format("rlhf_prep {}: wrote {}{}\n{}", cmd, o.out,
                           chat ? fmt::format(" (chat template {})", chat->tpl.name()) : "", rep.summary());
  return rep;
}

// A ranked group's last checks (K >= 2 usable responses, not all tied) and its append.
void push_group(PrepReport& rep, const std::string& where, const std::vector<int32_t>& p,
                std::vector<std::vector<int32_t>> rs, std::vector<int32_t> ranks, RankedData& d) {
  if (rs.size() < 2) {
    rep.skip("too_few_responses", where, fmt::format("K = {} usable responses (need >= 2)", rs.size()));
    return;
  }
  if (std::all_of(ranks.begin(), ranks.end(), [&](int32_t r) { return r == ranks[0]; })) {
    rep.skip("all_ranks_tied", where,
             fmt::format("all {} responses have rank {} (nothing to learn)", rs.size(), ranks[0]));
    return;
  }
  d.push_group(p, rs, ranks);
  rep.add("rows_written");
}

// ---- conversations (a chat template chosen) -----------------------------------------------
void chat_sft(const PrepOptions& o, const ChatEncoder& enc, PrepReport& rep, SftData& d) {
  for (const auto& row : read_chat_sft_rows(o, rep)) {
    ChatEncoder::Encoded e;
    try {
      e = enc.encode_conversation(row.messages);
    } catch (const ChatRowError& x) {
      rep.skip(x.reason, row.where, x.what());
      continue;
    }
    // prompt = everything before the first assistant turn; spans relative to the response.
    const int32_t b0 = e.spans[0];
    std::vector<int32_t> p(e.ids.begin(), e.ids.begin() + b0), r(e.ids.begin() + b0, e.ids.end());
    if (!limit_prompt(o, rep, row.where, &p) || !limit_response(o, rep, row.where, false, &r)) continue;
    std::vector<int32_t> spans;
    const auto n = static_cast<int32_t>(r.size());
    for (size_t k = 0; k < e.spans.size(); k += 2) {
      const int32_t b = e.spans[k] - b0, end = std::min(e.spans[k + 1] - b0, n);
      if (b < end) spans.insert(spans.end(), {b, end});
    }
    d.prompt.push(p);
    d.response.push(r);
    d.targets.push(spans);
    rep.add("rows_written");
  }
}

void chat_ranked(const PrepOptions& o, const ChatEncoder& enc, PrepReport& rep, RankedData& d) {
  for (const auto& g : read_chat_ranked_rows(o, rep)) {
    std::vector<int32_t> p;
    bool have_prompt = false;
    std::vector<std::vector<int32_t>> rs;
    std::vector<int32_t> ranks;
    for (size_t k = 0; k < g.responses.size(); ++k) {
      std::pair<std::vector<int32_t>, std::vector<int32_t>> pr;
      try {
        pr = enc.encode_reply(g.prompt, g.responses[k]);
      } catch (const ChatRowError& x) {
        rep.drop_response(x.reason, g.where, fmt::format("response {}: {}", k, x.what()));
        continue;
      }
      if (have_prompt && pr.first != p) {
        rep.drop_response("prompt_mismatch", g.where,
                          fmt::format("response {} renders the shared prompt differently", k));
        continue;
      }
      p = std::move(pr.first);
      have_prompt = true;
      if (!limit_response(o, rep, g.where, true, &pr.second)) continue;
      rs.push_back(std::move(pr.second));
      ranks.push_back(g.ranks[k]);
    }
    if (have_prompt && !limit_prompt(o, rep, g.where, &p)) continue;
    push_group(rep, g.where, p, std::move(rs), std::move(ranks), d);
  }
}

void chat_prompts(const PrepOptions& o, const ChatEncoder& enc, PrepReport& rep, PromptData& d) {
  for (const auto& row : read_chat_prompt_rows(o, rep)) {
    std::vector<int32_t> p;
    try {
      p = enc.encode_prompt(row.messages);
    } catch (const ChatRowError& x) {
      rep.skip(x.reason, row.where, x.what());
      continue;
    }
    if (!limit_prompt(o, rep, row.where, &p)) continue;
    d.prompt.push(p);
    rep.add("rows_written");
  }
}

}  // namespace

PrepReport run_prep_sft(const PrepOptions& o) {
  return write_prep<SftData>(o, "sft", source_name(o), [&](const Tokenizer& tok, const ChatPrep* chat,
                                                           PrepReport& rep, SftData& d) {
    if (chat) return chat_sft(o, chat->enc, rep, d);
    for (const auto& row : read_sft_rows(o, rep)) {
      std::vector<int32_t> p, r;
      if (!tokenize_prompt(tok, o, rep, row.prompt, row.where, &p)) continue;
      if (!tokenize_response(tok, o, rep, row.response, row.where, false, &r)) continue;
      d.prompt.push(p);
      d.response.push(r);
      rep.add("rows_written");
    }
  });
}

PrepReport run_prep_ranked(const PrepOptions& o) {
  return write_prep<RankedData>(o, "ranked", source_name(o), [&](const Tokenizer& tok, const ChatPrep* chat,
                                                                 PrepReport& rep, RankedData& d) {
    if (chat) return chat_ranked(o, chat->enc, rep, d);
    for (const auto& g : read_ranked_rows(o, rep)) {
      std::vector<int32_t> p;
      if (!tokenize_prompt(tok, o, rep, g.prompt, g.where, &p)) continue;
      std::vector<std::vector<int32_t>> rs;
      std::vector<int32_t> ranks;
      for (size_t j = 0; j < g.responses.size(); ++j) {
        std::vector<int32_t> r;
        if (!tokenize_response(tok, o, rep, g.responses[j], g.where, true, &r)) continue;
        rs.push_back(std::move(r));
        ranks.push_back(g.ranks[j]);
      }
      push_group(rep, g.where, p, std::move(rs), std::move(ranks), d);
    }
  });
}

PrepReport run_prep_prompts(const PrepOptions& o) {
  return write_prep<PromptData>(o, "prompts", source_name(o), [&](const Tokenizer& tok, const ChatPrep* chat,
                                                                  PrepReport& rep, PromptData& d) {
    if (chat) return chat_prompts(o, chat->enc, rep, d);
    std::vector<std::string> wheres;
    auto rows = read_prompt_rows(o, rep, &wheres);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::vector<int32_t> p;
      if (!tokenize_prompt(tok, o, rep, rows[i], wheres[i], &p)) continue;
      d.prompt.push(p);
      rep.add("rows_written");
    }
  });
}

PrepReport run_prep_pretrain(const PrepOptions& o) {
  RLHF_CHECK(!o.inputs.empty(), "rlhf_prep pretrain: no input files (--in FILE, repeatable)");
  RLHF_CHECK(!o.chat(), "rlhf_prep pretrain: plain text only (no --chat-template)");
  return write_prep<PretrainData>(o, "pretrain", "text", [&](const Tokenizer& tok, const ChatPrep*,
                                                             PrepReport& rep, PretrainData& d) {
    auto add_doc = [&](const std::string& doc, const std::string& w) {
      if (doc.find_first_not_of(" \t\r\n") == std::string::npos) return;  // nothing to learn
      rep.add("rows_read");
      if (!valid_utf8(doc)) {
        rep.skip("invalid_utf8", w, "document is not valid UTF-8");
        return;
      }
      auto ids = tok.encode(doc);
      d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
      d.tokens.push_back(tok.eos_id());
      rep.add("rows_written");
    };
    for (const auto& file : o.inputs) {
      if (!o.paragraphs) {
        add_doc(read_input_file(file, rep), where(file, 1));
        continue;
      }
      std::string para;
      int64_t start = 0;
      for_each_line(file, rep, [&](int64_t line, const std::string& l) {
        if (l.find_first_not_of(" \t") == std::string::npos) {
          add_doc(para, where(file, start));
          para.clear();
          return;
        }
        if (para.empty()) start = line;
        para += l + "\n";
      });
      add_doc(para, where(file, start));
    }
  });
}

}  // namespace rlhf
