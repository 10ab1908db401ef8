// bench_tokenize — encoding throughput of our tokenizers, and of Hugging Face `tokenizers` on the
// same text when --reference-python is given (a side-by-side ratio from one run).
//
// Input: a UTF-8 text file (default ../shared/data/corpus/tinyshakespeare.txt), split into
// paragraphs (blank-line separated, as a dataset's rows would be). For every tokenizer spec
// (default: gpt2, qwen3, llama3, mistral from ../shared/data), encodes all paragraphs --repeat
// times on one thread, then on --threads threads (paragraphs striped over threads; each thread
// holds the shared tokenizer: the real multi-threaded use). Prints one JSON line per tokenizer:
//   {"tokenizer", "kind", "mb", "tokens", "mb_per_s_1thread", "mb_per_s_nthreads", "threads",
//    "hf_mb_per_s_1thread", "ratio_vs_hf"}
// (hf_* only for hf-kind tokenizers with --reference-python: that python must import
// `tokenizers`; it encodes the same paragraphs with encode_batch-free single calls, one thread.)
// Usage: bench_tokenize [--text FILE] [--tokenizer SPEC]... [--threads N] [--repeat R]
//                       [--reference-python PY]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"
#include "common/core/process.h"

namespace {

const std::string kData = RLHF_SOURCE_DIR "/../shared/data";

std::vector<std::string> paragraphs(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RLHF_CHECK(f.good(), "bench_tokenize: cannot open '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string all = ss.str();
  std::vector<std::string> out;
  size_t b = 0;
  while (b < all.size()) {
    size_t e = all.find("\n\n", b);
    if (e == std::string::npos) e = all.size();
    out.push_back(all.substr(b, e + (e < all.size() ? 2 : 0) - b));
    b = e + 2;
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Encodes every paragraph `repeat` times on `threads` threads; returns seconds, sets tokens.
double encode_all(const rlhf::Tokenizer& tok, const std::vector<std::string>& paras, int threads,
                  int repeat, size_t& tokens) {
  std::vector<size_t> counts(threads, 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      for (int r = 0; r < repeat; ++r)
        for (size_t i = w; i < paras.size(); i += threads) counts[w] += tok.encode(paras[i]).size();
    });
  for (auto& t : pool) t.join();
  const double s = seconds_since(t0);
  tokens = 0;
  for (size_t c : counts) tokens += c;
  tokens /= repeat;
  return s;
}

// Hugging Face tokenizers on the same paragraphs, one thread; MB/s, or -1 when unavailable.
double hf_reference(const std::string& python, const std::string& tokenizer_json,
                    const std::string& text_path, int repeat) {
  const std::string script = fmt::format(
      "import sys,time\nfrom tokenizers import Tokenizer\n"
      "t=Tokenizer.from_file(sys.argv[1])\ntext=open(sys.argv[2],encoding='utf-8').read()\n"
      "ps=[p+'\\n\\n' for p in text.split('\\n\\n')]\nps[-1]=ps[-1][:-2]\n"
      "for p in ps[:50]: t.encode(p, add_special_tokens=False)\n"
      "t0=time.perf_counter()\nfor _ in range({}):\n  for p in ps: t.encode(p, add_special_tokens=False)\n"
      "print(len(text.encode())*{}/1e6/(time.perf_counter()-t0))\n", repeat, repeat);
  const std::string file = "/tmp/bench_tokenize_ref.py";
  std::ofstream(file) << script;
  const std::string run = fmt::format("RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false '{}' {} '{}' '{}'",
                                      python, file, tokenizer_json, text_path);
  FILE* p = popen(run.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[128] = {0};
  const bool ok = fgets(buf, sizeof(buf), p) != nullptr;
  const int rc = pclose(p);
  return ok && rc == 0 ? std::atof(buf) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  CLI::App app{"bench_tokenize: encoding throughput (one JSON line per tokenizer)"};
  std::string text = kData + "/corpus/tinyshakespeare.txt", python;
  std::vector<std::string> specs;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int repeat = 2;
  app.add_option("--text", text, "UTF-8 text file")->capture_default_str();
  app.add_option("--tokenizer", specs, "tokenizer spec (repeatable)");
  app.add_option("--threads", threads, "threads for the multi-threaded run")->capture_default_str();
  app.add_option("--repeat", repeat, "passes over the text")->capture_default_str();
  app.add_option("--reference-python", python, "a python with `tokenizers` for the HF ratio");
  CLI11_PARSE(app, argc, argv);
  if (specs.empty())
    specs = {kData + "/gpt2", kData + "/tokenizers/qwen3", kData + "/tokenizers/llama3",
             kData + "/tokenizers/mistral"};
  try {
    const auto paras = paragraphs(text);
    double mb = 0;
    for (const auto& p : paras) mb += p.size() / 1e6;
    for (const auto& spec : specs) {
      const auto tok = rlhf::load_tokenizer(spec);
      size_t tokens = 0;
      encode_all(*tok, paras, 1, 1, tokens);  // warm-up (caches), not timed
      const double s1 = encode_all(*tok, paras, 1, repeat, tokens);
      const double sn = encode_all(*tok, paras, threads, repeat, tokens);
      nlohmann::json j = {{"tokenizer", spec}, {"kind", tok->kind()}, {"mb", mb},
                          {"tokens", tokens}, {"threads", threads},
                          {"mb_per_s_1thread", mb * repeat / s1},
                          {"mb_per_s_nthreads", mb * repeat / sn}};
      if (!python.empty() && tok->kind() == "hf") {
        const double hf = hf_reference(python, tok->files()[0], text, repeat);
        if (hf > 0) {
          j["hf_mb_per_s_1thread"] = hf;
          j["ratio_vs_hf"] = mb * repeat / s1 / hf;
        }
      }
      std::cout << j.dump() << std::endl;
    }
  } catch (const rlhf::Error& e) {
    std::cerr << "bench_tokenize: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
