// sources.h — source adapters of rlhf_prep: raw files -> text rows (TextPair / TextGroup),
// before tokenization. Structural problems (malformed JSON, missing or non-string fields, bad
// ranks) are skipped and counted in the report, or thrown as "file:line: problem" with --strict.
//
// Formats:
//   jsonl      sft: {"prompt", "response"}; ranked: {"prompt", "responses": [...], "ranks": [...]}
//              (rank 0 = best, ties allowed) or {"prompt", "chosen", "rejected"} (K = 2);
//              prompts: a JSON string per line, or {"prompt"}.
//   oasst-tree Open Assistant message trees, one per line. Kept assistant replies: deleted ==
//              false, synthetic == false, rank not null. A prompter message with >= 2 kept
//              replies is one ranked group; its kept reply with rank 0 is one SFT pair. The
//              prompt is the conversation from the root to that prompter message, formatted as
//              "\n\nHuman: <text>" / "\n\nAssistant: <text>" turns followed by "\n\nAssistant:";
//              responses are " " + reply text (the hh-rlhf layout).
//   hh-rlhf    {"chosen", "rejected"} transcripts (gzip read directly). Each is split at its LAST
//              "\n\nAssistant:" (prompt keeps the marker, response is the rest, leading space
//              included). If the two prompts differ because a response itself contains
//              "\n\nAssistant:", both are split at the last marker inside their common prefix
//              (counted as realigned_split); if there is none, the row is skipped
//              (prompt_mismatch). sft uses chosen; prompts uses the chosen prompt.
// Blank lines are ignored. rows_read counts non-blank lines (trees for oasst-tree).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/prep/common.h"

namespace rlhf {

// Calls fn(where, json) for each non-blank line of a JSONL file that is valid UTF-8 and parses;
// other lines are counted (rows_read) and skipped by reason (invalid_utf8, malformed_json).
void for_each_json(const std::string& file, PrepReport& rep,
                   const std::function<void(const std::string&, const nlohmann::json&)>& fn);

std::vector<TextPair> read_sft_rows(const PrepOptions& o, PrepReport& rep);
std::vector<TextGroup> read_ranked_rows(const PrepOptions& o, PrepReport& rep);
std::vector<std::string> read_prompt_rows(const PrepOptions& o, PrepReport& rep,
                                          std::vector<std::string>* wheres);

// Open Assistant trees (oasst.cpp).
void oasst_rows(const std::string& file, PrepReport& rep, std::vector<TextPair>* sft,
                std::vector<TextGroup>* ranked);

// hh-rlhf transcript split (hh.cpp): false if no usable common "\n\nAssistant:" marker.
bool hh_split_pair(const std::string& chosen, const std::string& rejected, std::string* prompt,
                   std::string* chosen_resp, std::string* rejected_resp, bool* realigned);
// Splits one transcript at its last "\n\nAssistant:"; false if the marker is absent.
bool hh_split(const std::string& transcript, std::string* prompt, std::string* response);

}  // namespace rlhf
