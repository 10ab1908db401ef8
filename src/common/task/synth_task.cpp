#include "common/task/synth_task.h"

#include <algorithm>
#include <set>

#include "common/core/check.h"

namespace rlhf {

const std::vector<SynthCategory>& synth_categories() {
  static const std::vector<SynthCategory> cats = {
      {"fruit", "fruits", {"apple", "pear", "plum", "grape", "lemon", "mango", "peach", "cherry"}},
      {"color", "colors", {"red", "blue", "green", "yellow", "purple", "pink", "brown", "white"}},
      {"animal", "animals", {"cat", "dog", "horse", "cow", "sheep", "goat", "mouse", "duck"}},
      {"tool", "tools", {"hammer", "saw", "drill", "wrench", "axe", "shovel", "rake", "chisel"}},
      {"vegetable", "vegetables", {"carrot", "onion", "potato", "pea", "leek", "bean", "kale", "radish"}},
      {"drink", "drinks", {"tea", "coffee", "milk", "juice", "water", "soda", "cocoa", "cider"}},
  };
  return cats;
}

static const char* kVerbs[] = {"list", "name", "give me", "write"};
constexpr int kNumVerbs = 4;
constexpr int kMaxN = 4;

// ---- parsing & scoring ----------------------------------------------------------------
static std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

bool synth_prompt_parse(const std::string& prompt_in, SynthPrompt* out) {
  std::string p = trim(prompt_in);
  if (p.empty() || p.back() != ':') return false;
  p.pop_back();
  for (const char* verb : kVerbs) {
    std::string v = std::string(verb) + " ";
    if (p.compare(0, v.size(), v) != 0) continue;
    std::string rest = p.substr(v.size());
    size_t sp = rest.find(' ');
    if (sp != 1 || rest[0] < '1' || rest[0] > '0' + kMaxN) return false;
    std::string cat = rest.substr(2);
    const auto& cats = synth_categories();
    for (size_t c = 0; c < cats.size(); ++c) {
      if (cat == cats[c].plural || cat == cats[c].singular) {
        out->n = rest[0] - '0';
        out->category = static_cast<int>(c);
        return true;
      }
    }
    return false;
  }
  return false;
}

namespace {
// A response split the scorer's way: the items are the text before the first "." split at ","
// and trimmed.
struct ParsedResponse {
  bool has_dot = false, text_after_dot = false, empty_item = false;
  std::vector<std::string> items;
};

ParsedResponse parse_response(const std::string& response) {
  ParsedResponse r;
  std::string body = trim(response);
  size_t dot = body.find('.');
  std::string list = body;
  if (dot != std::string::npos) {
    r.has_dot = true;
    list = body.substr(0, dot);
    r.text_after_dot = !trim(body.substr(dot + 1)).empty();
  }
  if (!trim(list).empty()) {
    size_t start = 0;
    while (true) {
      size_t comma = list.find(',', start);
      std::string item = trim(list.substr(start, comma == std::string::npos ? std::string::npos
                                                                            : comma - start));
      if (item.empty()) r.empty_item = true;
      else r.items.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return r;
}

SynthPrompt parse_prompt_or_throw(const std::string& prompt, const char* who) {
  SynthPrompt sp;
  RLHF_CHECK(synth_prompt_parse(prompt, &sp),
             "{}: '{}' is not a synth prompt (\"list 3 fruits:\" form)", who, prompt);
  return sp;
}
}  // namespace

std::string synth_error_kind(const std::string& prompt, const std::string& response) {
  const SynthPrompt sp = parse_prompt_or_throw(prompt, "synth_error_kind");
  const auto& words = synth_categories()[sp.category].words;
  const ParsedResponse r = parse_response(response);
  std::vector<std::string> kinds;
  if (!r.has_dot) kinds.push_back("no_period");
  if (r.text_after_dot) kinds.push_back("rambling");
  if (r.empty_item) kinds.push_back("empty_item");
  const int n_items = static_cast<int>(r.items.size());
  if (n_items < sp.n) kinds.push_back("too_few");
  if (n_items > sp.n) kinds.push_back("too_many");
  std::set<std::string> seen;
  bool repeat = false, wrong = false;
  for (const auto& it : r.items) {
    if (!seen.insert(it).second) repeat = true;
    else if (std::find(words.begin(), words.end(), it) == words.end()) wrong = true;
  }
  if (repeat) kinds.push_back("repeat");
  if (wrong) kinds.push_back("wrong_item");
  if (kinds.empty()) return "perfect";
  std::string out = kinds[0];
  for (size_t i = 1; i < kinds.size(); ++i) out += "+" + kinds[i];
  return out;
}

double synth_hidden_score(const std::string& prompt, const std::string& response,
                          bool ended_with_eos) {
  const SynthPrompt sp = parse_prompt_or_throw(prompt, "synth_hidden_score");
  const auto& words = synth_categories()[sp.category].words;
  const ParsedResponse r = parse_response(response);
  const bool well_formed = r.has_dot && !r.text_after_dot && !r.empty_item;
  const std::vector<std::string>& items = r.items;
  const double n = sp.n;
  double score = 0;
  std::set<std::string> seen;
  int correct = 0;
  for (const auto& it : items) {
    if (seen.count(it)) {
      score -= 0.5 / n;  // repeat
      continue;
    }
    seen.insert(it);
    if (std::find(words.begin(), words.end(), it) != words.end()) ++correct;
    else score -= 0.5 / n;  // wrong category or unknown
  }
  score += std::min(correct, sp.n) / n;
  if (static_cast<int>(items.size()) > sp.n) score -= 0.25 * (static_cast<int>(items.size()) - sp.n);
  if (!ended_with_eos || !well_formed) score -= 0.5;
  return std::max(-1.0, std::min(1.0, score));
}

// ---- generation -----------------------------------------------------------------------
std::string synth_format_prompt(const SynthPrompt& p, int phrasing) {
  const auto& cats = synth_categories();
  RLHF_CHECK(p.n >= 1 && p.n <= kMaxN && p.category >= 0 &&
                 p.category < static_cast<int>(cats.size()) && phrasing >= 0 && phrasing < kNumVerbs,
             "synth_format_prompt: bad prompt (n {}, category {}, phrasing {})", p.n, p.category,
             phrasing);
  const auto& c = cats[p.category];
  return fmt::format("{} {} {}:", kVerbs[phrasing], p.n, p.n == 1 ? c.singular : c.plural);
}

SynthPrompt synth_random_prompt(SynthRng& rng) {
  SynthPrompt p;
  p.category = static_cast<int>(rng.uniform(synth_categories().size()));
  p.n = 1 + static_cast<int>(rng.uniform(kMaxN));
  return p;
}

std::string synth_random_prompt_text(SynthRng& rng) {
  SynthPrompt p = synth_random_prompt(rng);
  return synth_format_prompt(p, static_cast<int>(rng.uniform(kNumVerbs)));
}

// k distinct words of category c in random order.
static std::vector<std::string> distinct_words(int c, int k, SynthRng& rng) {
  std::vector<std::string> w = synth_categories()[c].words;
  for (int i = 0; i < k; ++i) std::swap(w[i], w[i + rng.uniform(w.size() - i)]);
  w.resize(k);
  return w;
}

static std::string join_items(const std::vector<std::string>& items) {
  std::string s = " ";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s;
}

// The edits every quality but WrongCount makes to a correct list, and the rendering:
// " a, b, c." (+ a rambling sentence, or without the period). `items` holds N correct words, or
// the caller's wrong-count list for WrongCount.
static std::string render_quality(const SynthPrompt& p, SynthQuality q,
                                  std::vector<std::string> items, SynthRng& rng) {
  const auto& cats = synth_categories();
  switch (q) {
    case SynthQuality::Perfect:
    case SynthQuality::WrongCount: break;
    case SynthQuality::Repeat: {
      if (p.n == 1) {
        items.push_back(items[0]);
      } else {
        int pos = 1 + static_cast<int>(rng.uniform(p.n - 1));
        items[pos] = items[rng.uniform(pos)];
      }
      break;
    }
    case SynthQuality::WrongItem: {
      int other = static_cast<int>(rng.uniform(cats.size() - 1));
      if (other >= p.category) ++other;
      items[rng.uniform(p.n)] = cats[other].words[rng.uniform(cats[other].words.size())];
      break;
    }
    case SynthQuality::Rambling: {
      const std::string& w = items[rng.uniform(items.size())];
      return join_items(items) + ". " + fmt::format("{} {} is a {}.", rng.uniform(2) ? "the" : "a",
                                                    w, cats[p.category].singular);
    }
    case SynthQuality::NoPeriod: return join_items(items);
  }
  return join_items(items) + ".";
}

std::string synth_make_response(const SynthPrompt& p, SynthQuality q, SynthRng& rng) {
  std::vector<std::string> items = distinct_words(p.category, p.n, rng);
  if (q == SynthQuality::WrongCount) {
    static const int deltas[] = {-1, 1, 2};
    int k = p.n + deltas[rng.uniform(3)];
    if (k < 1) k = p.n + 1;
    items = distinct_words(p.category, k, rng);
  }
  return render_quality(p, q, std::move(items), rng);
}

SynthQuality synth_sample_quality(SynthRng& rng) {
  double u = rng.uniform01();
  return u < 0.40   ? SynthQuality::Perfect
         : u < 0.55 ? SynthQuality::Repeat
         : u < 0.70 ? SynthQuality::WrongItem
         : u < 0.85 ? SynthQuality::WrongCount
         : u < 0.95 ? SynthQuality::Rambling
                    : SynthQuality::NoPeriod;
}

std::string synth_sample_response(const SynthPrompt& p, SynthRng& rng, SynthQuality* quality) {
  SynthQuality q = synth_sample_quality(rng);
  if (quality) *quality = q;
  return synth_make_response(p, q, rng);
}

std::vector<std::string> synth_distinct_items(int category, int k, SynthRng& rng) {
  RLHF_CHECK(category >= 0 && category < static_cast<int>(synth_categories().size()) && k >= 0 &&
                 k <= static_cast<int>(synth_categories()[category].words.size()),
             "synth_distinct_items: bad category {} or count {}", category, k);
  return distinct_words(category, k, rng);
}

std::string synth_make_variant(const SynthPrompt& p, const std::vector<std::string>& base,
                               SynthQuality q, SynthRng& rng) {
  const auto& cats = synth_categories();
  RLHF_CHECK(static_cast<int>(base.size()) == p.n, "synth_make_variant: base has {} items, N = {}",
             base.size(), p.n);
  std::vector<std::string> items = base;
  if (q == SynthQuality::WrongCount) {
    static const int deltas[] = {-1, 1, 2};
    int k = p.n + deltas[rng.uniform(3)];
    if (k < 1) k = p.n + 1;
    if (k < p.n) {
      items.erase(items.begin() + rng.uniform(p.n));
    } else {
      std::vector<std::string> rest;  // category words not in the base, random order
      for (const auto& w : distinct_words(p.category, static_cast<int>(cats[p.category].words.size()), rng))
        if (std::find(base.begin(), base.end(), w) == base.end()) rest.push_back(w);
      items.insert(items.end(), rest.begin(), rest.begin() + (k - p.n));
    }
  }
  return render_quality(p, q, std::move(items), rng);
}

static std::string article(const std::string& w) {
  return std::string("aeiou").find(w[0]) != std::string::npos ? "an" : "a";
}

std::string synth_pretrain_document(SynthRng& rng) {
  const auto& cats = synth_categories();
  int n_sentences = 3 + static_cast<int>(rng.uniform(6));
  std::string doc;
  for (int s = 0; s < n_sentences; ++s) {
    const auto& c = cats[rng.uniform(cats.size())];
    const std::string& w = c.words[rng.uniform(c.words.size())];
    std::string sent;
    switch (rng.uniform(5)) {
      case 0: sent = fmt::format("{} {} is {} {}.", article(w), w, article(c.singular), c.singular); break;
      case 1: sent = fmt::format("the {} is {} {}.", w, article(c.singular), c.singular); break;
      case 2: sent = fmt::format("{} is a kind of {}.", w, c.singular); break;
      case 3: {
        int ci = static_cast<int>(&c - cats.data());
        auto ws = distinct_words(ci, 2 + static_cast<int>(rng.uniform(2)), rng);
        std::string list;
        for (size_t i = 0; i < ws.size(); ++i)
          list += (i == 0 ? "" : (i + 1 == ws.size() ? " and " : ", ")) + ws[i];
        sent = fmt::format("{} are {}.", list, c.plural);
        break;
      }
      default: sent = fmt::format("i like {} {}.", c.singular == "color" ? "the color" : "the", w);
    }
    doc += (s ? " " : "") + sent;
  }
  return doc;
}

}  // namespace rlhf
