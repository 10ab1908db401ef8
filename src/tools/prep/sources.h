// sources.h — source adapters of rlhf_prep: raw files -> text rows (TextPair / TextGroup),
// before tokenization. Structural problems (malformed JSON, missing or non-string fields, bad
// ranks) are skipped and counted in the report, or thrown as "file:line: problem" with --strict.
//
// Formats:
//   jsonl      sft: {"prompt", "response"}; ranked: {"prompt", "responses": [...], "ranks": [...]}
//              (rank 0 = best, ties allowed) or {"prompt", "chosen", "rejected"} (K = 2);
//              prompts: a JSON string per line, or {"prompt"}.
//   oasst-tree, messages: conversations — only with a chat template (read_chat_* below).
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
                   const std::function<void(const std::string&, const nlohmann::ordered_json&)>& fn);

std::vector<TextPair> read_sft_rows(const PrepOptions& o, PrepReport& rep);
std::vector<TextGroup> read_ranked_rows(const PrepOptions& o, PrepReport& rep);
// wheres (optional): each row's "file:line".
std::vector<std::string> read_prompt_rows(const PrepOptions& o, PrepReport& rep,
                                          std::vector<std::string>* wheres);

// A string field of a JSON row; false (row skipped as missing_field / bad_field_type) otherwise.
bool get_string(const nlohmann::ordered_json& j, const std::string& key, PrepReport& rep,
                const std::string& where, std::string* out);

// Ranked rows' {"responses": [...], "ranks": [...]} form: present? (either key); the responses
// list (nullptr = row skipped: missing_field / bad_field_type); n ranks (false = bad_ranks).
bool has_ranked_list(const nlohmann::ordered_json& j);
const nlohmann::ordered_json* ranked_list(const nlohmann::ordered_json& j, PrepReport& rep,
                                          const std::string& where);
bool get_ranks(const nlohmann::ordered_json& j, size_t n, PrepReport& rep, const std::string& where,
               std::vector<int32_t>* ranks);

// Conversations (chat_sources.cpp), for a chosen chat template. Per format:
//   messages   sft: {messages_key: [...]} (>= 1 assistant turn); ranked: {prompt_key: [...],
//              "responses": [[...], ...], "ranks": [...]}, or {chosen_key: [...], rejected_key:
//              [...]} with an optional {prompt_key: [...]} (without it the longest shared prefix
//              of the two lists is the prompt); prompts: {prompt_key: [...]} or {messages_key: [...]}
//              ending with a non-assistant turn.
//   jsonl      the plain rows above with text fields, each text a one-message list (the prompt a
//              user turn, each response an assistant turn).
//   oasst-tree Open Assistant trees: sft = threads from the root that follow each prompter
//              message's best kept reply (rank 0) and branch at every prompter follow-up, each
//              thread ending where no best reply continues it; ranked = each prompter message
//              with >= 2 kept replies (the conversation to it is the prompt); prompts = the
//              threads' conversations before their last assistant turn.
//   hh-rlhf    transcripts parsed into "Human:" / "Assistant:" turns (user / assistant).
// Roles: prompter/Human -> user, assistant/Assistant -> assistant.
std::vector<ChatRow> read_chat_sft_rows(const PrepOptions& o, PrepReport& rep);
std::vector<ChatGroup> read_chat_ranked_rows(const PrepOptions& o, PrepReport& rep);
std::vector<ChatRow> read_chat_prompt_rows(const PrepOptions& o, PrepReport& rep);
// Open Assistant trees as conversations (oasst.cpp): threads (sft) and/or ranked groups.
void oasst_conversations(const std::string& file, PrepReport& rep, std::vector<ChatRow>* threads,
                         std::vector<ChatGroup>* groups);

// hh-rlhf transcript split (hh.cpp): false if no usable common "\n\nAssistant:" marker.
bool hh_split_pair(const std::string& chosen, const std::string& rejected, std::string* prompt,
                   std::string* chosen_resp, std::string* rejected_resp, bool* realigned);
// Splits one transcript at its last "\n\nAssistant:"; false if the marker is absent.
bool hh_split(const std::string& transcript, std::string* prompt, std::string* response);

}  // namespace rlhf
