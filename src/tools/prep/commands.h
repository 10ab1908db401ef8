// commands.h — the rlhf_prep subcommands as library calls (main.cpp parses the
// command line; tests call these directly). Each run_prep_* reads o.inputs with the adapter of
// o.format (sources.h), tokenizes with o.tokenizer, applies the bad-input and length rules
// (common.h), writes o.out atomically, prints the report to stderr and returns it.
// Throws rlhf::Error for unusable options, unreadable inputs, --strict violations, or when no
// row survives.
#pragma once
#include <ostream>
#include <string>

#include "tools/prep/common.h"

namespace rlhf {

PrepReport run_prep_sft(const PrepOptions& o);
PrepReport run_prep_ranked(const PrepOptions& o);
PrepReport run_prep_prompts(const PrepOptions& o);
// Plain text files -> one stream; each document (a file, or a blank-line separated paragraph
// with o.paragraphs) is followed by EOS. Invalid UTF-8 documents are skipped (invalid_utf8).
PrepReport run_prep_pretrain(const PrepOptions& o);

// Human-readable summary of any dataset file: kind, counts, K histogram (ranked), length
// statistics, tokenizer identity, source, chat template, target tokens (chat sft) and the stored
// prep report; then (rows > 0) the first `rows` rows as JSON lines decoded with the dataset's
// tokenizer, special tokens kept: sft {row, prompt, response[, targets: [text per span]]},
// ranked {group, prompt, responses, ranks}, prompts {row, prompt} (inspect.cpp).
void run_prep_inspect(const std::string& path, std::ostream& out, int64_t rows = 0);

}  // namespace rlhf
