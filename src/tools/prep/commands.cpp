#include "tools/prep/commands.h"

#include <iostream>

#include "common/core/check.h"
#include "common/data/data.h"
#include "tools/prep/sources.h"

namespace rlhf {

namespace {

std::string source_name(const PrepOptions& o) { return source_format_name(o.format); }

void finish(const char* cmd, const PrepOptions& o, const PrepReport& rep) {
  RLHF_CHECK(rep.get("rows_written") > 0, "rlhf_prep {}: no row survived ({} read); report:\n{}",
             cmd, rep.get("rows_read"), rep.summary());
  std::cerr << fmt::format("rlhf_prep {}: wrote {}\n{}", cmd, o.out, rep.summary());
}

void check_out(const PrepOptions& o) {
  RLHF_CHECK(!o.out.empty(), "rlhf_prep: --out FILE.h5 is required");
}

// The frame of every prep command: tokenizer and report, `fill(tok, rep, data)`, metadata, the
// "some row survived" check, save.
template <class Data, class Fill>
PrepReport write_prep(const PrepOptions& o, const char* cmd, const std::string& source, Fill fill) {
  check_out(o);
  auto tok = load_tokenizer(o.tokenizer);
  PrepReport rep(o.strict);
  Data d;
  fill(*tok, rep, d);
  d.meta = make_meta(*tok, source, rep);
  finish(cmd, o, rep);
  d.save(o.out);
  return rep;
}

}  // namespace

PrepReport run_prep_sft(const PrepOptions& o) {
  return write_prep<SftData>(o, "sft", source_name(o), [&](const Tokenizer& tok, PrepReport& rep, SftData& d) {
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
  return write_prep<RankedData>(o, "ranked", source_name(o), [&](const Tokenizer& tok, PrepReport& rep, RankedData& d) {
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
      if (rs.size() < 2) {
        rep.skip("too_few_responses", g.where,
                 fmt::format("K = {} usable responses (need >= 2)", rs.size()));
        continue;
      }
      if (std::all_of(ranks.begin(), ranks.end(), [&](int32_t r) { return r == ranks[0]; })) {
        rep.skip("all_ranks_tied", g.where,
                 fmt::format("all {} responses have rank {} (nothing to learn)", rs.size(), ranks[0]));
        continue;
      }
      d.push_group(p, rs, ranks);
      rep.add("rows_written");
    }
  });
}

PrepReport run_prep_prompts(const PrepOptions& o) {
  return write_prep<PromptData>(o, "prompts", source_name(o), [&](const Tokenizer& tok, PrepReport& rep, PromptData& d) {
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
  return write_prep<PretrainData>(o, "pretrain", "text", [&](const Tokenizer& tok, PrepReport& rep, PretrainData& d) {
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
        add_doc(read_input_file(file), where(file, 1));
        continue;
      }
      std::string para;
      int64_t start = 0;
      for_each_line(file, [&](int64_t line, const std::string& l) {
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

// ---- inspect --------------------------------------------------------------------------
namespace {

std::string length_stats(const char* what, const Ragged& r) {
  if (r.size() == 0) return fmt::format("  {} lengths: (none)\n", what);
  std::vector<int64_t> len;
  for (int64_t i = 0; i < r.size(); ++i) len.push_back(r.row_len(i));
  std::sort(len.begin(), len.end());
  double mean = static_cast<double>(r.tokens.size()) / static_cast<double>(len.size());
  return fmt::format("  {} lengths: min {} mean {:.1f} p50 {} p95 {} max {}\n", what, len.front(),
                     mean, len[len.size() / 2], len[len.size() * 95 / 100], len.back());
}

}  // namespace

void run_prep_inspect(const std::string& path, std::ostream& out) {
  DatasetMeta m = load_dataset_meta(path);
  out << fmt::format("file: {}\nkind: {}\nformat_version: {}\ntokenizer: {}\ntokenizer_spec: {}\n"
                     "vocab_size: {}\nsource: {}\n",
                     path, data_kind_name(m.kind), m.format_version, m.tokenizer,
                     m.tokenizer_spec, m.vocab_size, m.source);
  switch (m.kind) {
    case DataKind::Sft: {
      auto d = SftData::load(path);
      out << fmt::format("examples: {}\ntokens: {}\n", d.size(),
                         d.prompt.tokens.size() + d.response.tokens.size());
      out << length_stats("prompt", d.prompt) << length_stats("response", d.response);
      break;
    }
    case DataKind::Ranked: {
      auto d = RankedData::load(path);
      out << fmt::format("groups: {}\nresponses: {}\npairs: ", d.size(), d.responses.size());
      std::map<int64_t, int64_t> hist;
      int64_t pairs = 0;
      for (int64_t g = 0; g < d.size(); ++g) {
        hist[d.group_size(g)]++;
        for (int64_t a = d.first_response(g); a < d.end_response(g); ++a)
          for (int64_t b = a + 1; b < d.end_response(g); ++b) pairs += d.ranks[a] != d.ranks[b];
      }
      out << pairs << " (ordered, ties excluded)\nK histogram:";
      for (const auto& [k, c] : hist) out << fmt::format(" K={}:{}", k, c);
      out << "\n" << length_stats("prompt", d.prompt) << length_stats("response", d.responses);
      break;
    }
    case DataKind::Prompts: {
      auto d = PromptData::load(path);
      out << fmt::format("prompts: {}\n", d.size()) << length_stats("prompt", d.prompt);
      break;
    }
    case DataKind::Pretrain: {
      auto d = PretrainData::load(path);
      out << fmt::format("tokens: {}\n", d.size());
      break;
    }
  }
  out << "report:\n";
  for (const auto& [k, v] : m.report) out << fmt::format("  {} = {}\n", k, v);
}

}  // namespace rlhf
