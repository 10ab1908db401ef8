// Tests for conversations (src/common/chat/chat_encode.h, rlhf_prep --format messages /
// --chat-template, the chat framing of trainer batches, templates travelling with models):
// token rows compared with the chat layouts written out by hand, target spans decoded back to
// exactly the assistant turns, bad rows counted by reason.
#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "common/chat/chat_encode.h"
#include "common/core/check.h"
#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/io/model_file.h"
#include "common/tokenizer/tokenizer.h"
#include "common/train/train_common.h"
#include "support/test_support.h"
#include "tools/prep/commands.h"

namespace {

using ojson = nlohmann::ordered_json;
using rlhf::ChatEncoder;
using rlhf::ChatTemplate;
using rlhf::testing::error_of;
using rlhf::testing::TempDir;

const std::string kTok = std::string(RLHF_SOURCE_DIR) + "/../shared/data/tokenizers/";
const std::string kGpt2 = std::string(RLHF_SOURCE_DIR) + "/../shared/data/gpt2";

ojson msg(const char* role, const std::string& content) { return {{"role", role}, {"content", content}}; }

const ojson kConv = ojson::array({msg("system", "Be brief."), msg("user", "Hi there"), msg("assistant", "Hello!"),
                                  msg("user", "2+2?"), msg("assistant", "4")});

// kConv in the chatml layout, written out by hand.
const std::string kConvChatml =
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
    "<|im_start|>assistant\n4<|im_end|>\n";

std::vector<int32_t> slice(const std::vector<int32_t>& v, int32_t b, int32_t e) {
  return std::vector<int32_t>(v.begin() + b, v.begin() + e);
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string refusal(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const rlhf::ChatRowError& e) {
    return e.reason + ": " + e.what();
  }
  return "<no ChatRowError>";
}

}  // namespace

// ---- ChatEncoder -----------------------------------------------------------------------------

TEST(ChatEncoder, ChatmlTargetsAreExactlyTheAssistantTurns) {
  auto tok = rlhf::load_tokenizer(kTok + "qwen3");
  const ChatTemplate tpl = ChatTemplate::select("chatml", tok->spec());
  const ChatEncoder enc(tpl, *tok);
  EXPECT_EQ(enc.end_of_turn(), tok->token_id("<|im_end|>"));
  EXPECT_EQ(enc.end_of_turn_text(), "<|im_end|>");
  const ChatEncoder::Encoded e = enc.encode_conversation(kConv);
  EXPECT_EQ(e.ids, tok->encode(kConvChatml));  // pieces encode like the whole text here
  ASSERT_EQ(e.spans.size(), 4u);
  EXPECT_EQ(slice(e.ids, e.spans[0], e.spans[1]), tok->encode("Hello!<|im_end|>"));
  EXPECT_EQ(slice(e.ids, e.spans[2], e.spans[3]), tok->encode("4<|im_end|>"));
  const std::string before_first =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(e.spans[0], static_cast<int32_t>(tok->encode(before_first).size()));
  EXPECT_EQ(tok->decode_with_special_tokens(slice(e.ids, e.spans[2], e.spans[3])), "4<|im_end|>");
  // The prompt of the last turn and the reply, as PPO / RM rows see them.
  const ojson prompt = ojson::array({msg("user", "2+2?")});
  auto [p, r] = enc.encode_reply(prompt, ojson::array({msg("assistant", "4")}));
  EXPECT_EQ(p, tok->encode("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_EQ(p, enc.encode_prompt(prompt));
  EXPECT_EQ(r, tok->encode("4<|im_end|>"));  // through the end of turn, not the "\n" after it
}

TEST(ChatEncoder, NoEndOfTurnTokenMeansEosAfterEveryAssistantTurn) {
  auto tok = rlhf::load_tokenizer("byte");
  const ChatTemplate tpl = ChatTemplate::select("hh", "byte");
  const ChatEncoder enc(tpl, *tok);
  EXPECT_EQ(enc.end_of_turn(), -1);
  const ojson conv = ojson::array({msg("user", "U1"), msg("assistant", "A1"), msg("user", "U2"), msg("assistant", "A2")});
  const ChatEncoder::Encoded e = enc.encode_conversation(conv);
  const int32_t eos = tok->eos_id();
  const auto a1 = concat({tok->encode(" A1"), {eos}}), a2 = concat({tok->encode(" A2"), {eos}});
  const auto h1 = tok->encode("\n\nHuman: U1\n\nAssistant:"), h2 = tok->encode("\n\nHuman: U2\n\nAssistant:");
  EXPECT_EQ(e.ids, concat({h1, a1, h2, a2}));
  const auto n1 = static_cast<int32_t>(h1.size()), n2 = static_cast<int32_t>(h2.size());
  const int32_t na = static_cast<int32_t>(a1.size());
  EXPECT_EQ(e.spans, (std::vector<int32_t>{n1, n1 + na, n1 + na + n2, n1 + na + n2 + na}));
  // A prompt with an earlier assistant turn carries the same EOS after it.
  EXPECT_EQ(enc.encode_prompt(ojson::array({msg("user", "U1"), msg("assistant", "A1"), msg("user", "U2")})),
            concat({h1, a1, h2}));
}

TEST(ChatEncoder, EndOfTurnPerTemplateAndTokenizer) {
  auto llama3 = rlhf::load_tokenizer(kTok + "llama3");
  const ChatTemplate l3 = ChatTemplate::select("llama3", llama3->spec());
  EXPECT_EQ(ChatEncoder(l3, *llama3).end_of_turn(), llama3->token_id("<|eot_id|>"));
  const ChatTemplate l3own = ChatTemplate::select("auto", llama3->spec());
  EXPECT_EQ(ChatEncoder(l3own, *llama3).end_of_turn(), llama3->token_id("<|eot_id|>"));
  auto mistral = rlhf::load_tokenizer(kTok + "mistral");
  const ChatTemplate ms = ChatTemplate::select("mistral", mistral->spec());
  EXPECT_EQ(ChatEncoder(ms, *mistral).end_of_turn(), mistral->eos_id());
  // GPT-2 has no <|im_end|> token: the text stays a target and EOS follows it.
  auto gpt2 = rlhf::load_tokenizer(kGpt2);
  const ChatTemplate cm = ChatTemplate::select("chatml", gpt2->spec());
  const ChatEncoder enc(cm, *gpt2);
  EXPECT_EQ(enc.end_of_turn(), -1);
  auto [p, r] = enc.encode_reply(ojson::array({msg("user", "hi")}), ojson::array({msg("assistant", "yo")}));
  EXPECT_EQ(r, concat({gpt2->encode("yo<|im_end|>"), {gpt2->eos_id()}}));
}

TEST(ChatEncoder, Qwen3OwnTemplateIsNotPrefixStableForMultiTurn) {
  auto tok = rlhf::load_tokenizer(kTok + "qwen3");
  const ChatTemplate tpl = ChatTemplate::select("auto", tok->spec());
  const ChatEncoder enc(tpl, *tok);
  EXPECT_EQ(enc.end_of_turn(), tok->token_id("<|im_end|>"));
  const std::string err = refusal([&] { enc.encode_conversation(kConv); });
  EXPECT_EQ(err.rfind("not_prefix_stable: ", 0), 0u) << err;
  EXPECT_NE(err.find("first 3 messages"), std::string::npos) << err;
  // One turn is fine: the (empty) thinking block is part of the target, as Qwen3 renders it.
  const ChatEncoder::Encoded e = enc.encode_conversation(ojson::array({msg("user", "Hi"), msg("assistant", "Hello!")}));
  ASSERT_EQ(e.spans.size(), 2u);
  EXPECT_EQ(tok->decode_with_special_tokens(slice(e.ids, e.spans[0], e.spans[1])),
            "<think>\n\n</think>\n\nHello!<|im_end|>");
  EXPECT_EQ(slice(e.ids, 0, e.spans[0]), tok->encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
}

TEST(ChatEncoder, BadConversationsNameTheirReason) {
  auto tok = rlhf::load_tokenizer(kTok + "mistral");
  const ChatTemplate tpl = ChatTemplate::select("mistral", tok->spec());
  const ChatEncoder enc(tpl, *tok);
  std::string e = refusal([&] { enc.encode_conversation(ojson::array({msg("assistant", "a"), msg("user", "b"), msg("assistant", "c")})); });
  EXPECT_EQ(e.rfind("template_error: ", 0), 0u) << e;
  EXPECT_NE(e.find("roles must alternate"), std::string::npos) << e;  // raise_exception's message
  e = refusal([&] { enc.encode_conversation(ojson::array({msg("user", "b")})); });
  EXPECT_EQ(e.rfind("no_assistant_turn: ", 0), 0u) << e;
  e = refusal([&] { enc.encode_conversation(ojson::array({{{"role", "user"}}})); });
  EXPECT_EQ(e.rfind("bad_messages: ", 0), 0u) << e;
  EXPECT_NE(e.find("message 0 (user) has no string \"content\""), std::string::npos) << e;
  e = refusal([&] { enc.encode_prompt(ojson::array({msg("user", "b"), msg("assistant", "c")})); });
  EXPECT_EQ(e.rfind("prompt_ends_with_assistant: ", 0), 0u) << e;
  e = refusal([&] { enc.encode_conversation(ojson::object()); });
  EXPECT_EQ(e.rfind("bad_messages: ", 0), 0u) << e;
  // A role the template does not know: hh raises, naming it.
  auto byte = rlhf::load_tokenizer("byte");
  const ChatTemplate hh = ChatTemplate::select("hh", "byte");
  const ChatEncoder hh_enc(hh, *byte);
  e = refusal([&] { hh_enc.encode_conversation(ojson::array({msg("tool", "x"), msg("assistant", "y")})); });
  EXPECT_EQ(e.rfind("template_error: ", 0), 0u) << e;
  EXPECT_NE(e.find("unknown role tool"), std::string::npos) << e;
}

// ---- rlhf_prep --format messages --------------------------------------------------------------

namespace {
rlhf::PrepOptions chat_opts(const std::string& in, const std::string& out, const std::string& tpl = "chatml") {
  rlhf::PrepOptions o;
  o.inputs = {in};
  o.out = out;
  o.tokenizer = kTok + "qwen3";
  o.format = rlhf::SourceFormat::Messages;
  o.chat_template = tpl;
  return o;
}

// The runs of consecutive target positions of batch row i, as token lists.
std::vector<std::vector<int32_t>> target_runs(const rlhf::SeqBatch& b, int64_t i) {
  std::vector<std::vector<int32_t>> runs;
  bool in = false;
  for (int64_t t = 0; t < b.tokens.size(1); ++t) {
    const bool tgt = b.loss_mask[i][t].item<bool>();
    if (tgt && !in) runs.emplace_back();
    if (tgt) runs.back().push_back(static_cast<int32_t>(b.tokens[i][t].item<int64_t>()));
    in = tgt;
  }
  return runs;
}
}  // namespace

TEST(PrepChat, SftMessagesTargetsDecodeToExactlyTheAssistantTurns) {
  TempDir dir;
  const std::string in = dir.write(
      "conv.jsonl", ojson{{"messages", kConv}}.dump() + "\n" +
                        R"({"messages": [{"role": "user", "content": 5}]})" "\n" +
                        R"({"messages": "not a list"})" "\n" +
                        R"({"messages": [{"role": "user", "content": "only a question"}]})" "\n" +
                        R"({"dialog": []})" "\n" +
                        ojson{{"messages", ojson::array({msg("user", "Q"), msg("assistant", "A")})}}.dump() + "\n");
  auto rep = rlhf::run_prep_sft(chat_opts(in, dir.at("sft.h5")));
  EXPECT_EQ(rep.get("rows_read"), 6);
  EXPECT_EQ(rep.get("rows_written"), 2);
  EXPECT_EQ(rep.get("skipped_bad_messages"), 2);
  EXPECT_EQ(rep.get("skipped_no_assistant_turn"), 1);
  EXPECT_EQ(rep.get("skipped_missing_field"), 1);

  auto tok = rlhf::load_tokenizer(kTok + "qwen3");
  const rlhf::SftData d = rlhf::SftData::load(dir.at("sft.h5"), tok->identity());
  ASSERT_TRUE(d.meta.chat());
  EXPECT_EQ(d.meta.chat_template_name, "chatml");
  EXPECT_EQ(d.meta.chat_template, rlhf::builtin_chat_template("chatml"));
  EXPECT_EQ(d.meta.end_of_turn, tok->token_id("<|im_end|>"));
  ASSERT_TRUE(d.has_targets());

  // Trainer framing: nothing added, the end of turn stops generation.
  rlhf::SpecialIds plain{tok->bos_id(), tok->eos_id(), tok->pad_id(), {}};
  const rlhf::SpecialIds ids = rlhf::for_rows(plain, d.meta);
  EXPECT_EQ(ids.bos, -1);
  EXPECT_FALSE(ids.add_eos);
  EXPECT_EQ(ids.eos, tok->token_id("<|im_end|>"));  // Qwen3's EOS is its end of turn already
  EXPECT_TRUE(ids.stops.empty());
  rlhf::DatasetMeta other = d.meta;
  other.end_of_turn = 5;
  EXPECT_EQ(rlhf::for_rows(plain, other).stops, (std::vector<int64_t>{5}));
  EXPECT_EQ(rlhf::for_rows(plain, rlhf::DatasetMeta{}).bos, tok->bos_id());  // plain rows: as given
  EXPECT_TRUE(rlhf::for_rows(plain, rlhf::DatasetMeta{}).add_eos);
  const rlhf::SeqBatch b = rlhf::build_seq_batch({d.row(0), d.row(1)}, ids, 512);
  // Row 0: the whole conversation, token for token; its targets are the two assistant turns.
  std::vector<int32_t> row0;
  for (int64_t t = 0; t < b.attention_mask[0].sum().item<int64_t>(); ++t) row0.push_back(static_cast<int32_t>(b.tokens[0][t].item<int64_t>()));
  EXPECT_EQ(row0, tok->encode(kConvChatml));
  const auto runs = target_runs(b, 0);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(tok->decode_with_special_tokens(runs[0]), "Hello!<|im_end|>");
  EXPECT_EQ(tok->decode_with_special_tokens(runs[1]), "4<|im_end|>");
  EXPECT_EQ(b.target_tokens, static_cast<int64_t>(runs[0].size() + runs[1].size() + target_runs(b, 1)[0].size()));
  EXPECT_EQ(tok->decode_with_special_tokens(target_runs(b, 1)[0]), "A<|im_end|>");

  // inspect --rows shows the same split.
  std::ostringstream os;
  rlhf::run_prep_inspect(dir.at("sft.h5"), os, 5);
  const std::string s = os.str();
  EXPECT_NE(s.find("chat_template: chatml (end_of_turn "), std::string::npos) << s;
  const std::string last = s.substr(s.rfind("{\"row\":0"));
  const ojson j = ojson::parse(last.substr(0, last.find('\n')));
  EXPECT_EQ(j["targets"], ojson::array({"Hello!<|im_end|>", "4<|im_end|>"}));
  EXPECT_EQ(j["prompt"].get<std::string>() + j["response"].get<std::string>(), kConvChatml);
}

TEST(PrepChat, RankedConversationsKWiseAndPairwiseRoundTripThroughInspect) {
  TempDir dir;
  const ojson q = ojson::array({msg("user", "Q")});
  std::string lines;
  lines += ojson{{"prompt", q},
                 {"responses", ojson::array({ojson::array({msg("assistant", "a")}), ojson::array({msg("assistant", "b")}),
                                             ojson::array({msg("assistant", "c")})})},
                 {"ranks", {1, 0, 2}}}.dump() + "\n";
  lines += ojson{{"chosen", ojson::array({msg("user", "Q2"), msg("assistant", "good")})},
                 {"rejected", ojson::array({msg("user", "Q2"), msg("assistant", "bad")})}}.dump() + "\n";
  lines += ojson{{"prompt", ojson::array({msg("user", "Q3")})},
                 {"chosen", ojson::array({msg("assistant", "yes")})},
                 {"rejected", ojson::array({msg("assistant", "no")})}}.dump() + "\n";
  lines += ojson{{"prompt", q}, {"responses", ojson::array({ojson::array({{{"role", "assistant"}}}), "x"})},
                 {"ranks", {0, 1}}}.dump() + "\n";
  const std::string in = dir.write("ranked.jsonl", lines);
  auto rep = rlhf::run_prep_ranked(chat_opts(in, dir.at("ranked.h5")));
  EXPECT_EQ(rep.get("rows_written"), 3);
  EXPECT_EQ(rep.get("skipped_bad_messages"), 1);

  std::ostringstream os;
  rlhf::run_prep_inspect(dir.at("ranked.h5"), os, 10);
  std::vector<ojson> groups;
  std::istringstream is(os.str());
  for (std::string l; std::getline(is, l);)
    if (l.rfind("{\"group\"", 0) == 0) groups.push_back(ojson::parse(l));
  ASSERT_EQ(groups.size(), 3u);
  auto prompt_of = [](const std::string& u) { return "<|im_start|>user\n" + u + "<|im_end|>\n<|im_start|>assistant\n"; };
  EXPECT_EQ(groups[0]["prompt"], prompt_of("Q"));
  EXPECT_EQ(groups[0]["responses"], ojson::array({"a<|im_end|>", "b<|im_end|>", "c<|im_end|>"}));
  EXPECT_EQ(groups[0]["ranks"], ojson::array({1, 0, 2}));
  EXPECT_EQ(groups[1]["prompt"], prompt_of("Q2"));  // the shared prefix of chosen and rejected
  EXPECT_EQ(groups[1]["responses"], ojson::array({"good<|im_end|>", "bad<|im_end|>"}));
  EXPECT_EQ(groups[1]["ranks"], ojson::array({0, 1}));
  EXPECT_EQ(groups[2]["prompt"], prompt_of("Q3"));
  EXPECT_EQ(groups[2]["responses"], ojson::array({"yes<|im_end|>", "no<|im_end|>"}));
}

TEST(PrepChat, PromptsFromMessagesAndFromPlainTextWithATemplate) {
  TempDir dir;
  const std::string in = dir.write(
      "p.jsonl", ojson{{"prompt", ojson::array({msg("user", "Q1")})}}.dump() + "\n" +
                     ojson{{"messages", ojson::array({msg("system", "S"), msg("user", "Q2")})}}.dump() + "\n" +
                     ojson{{"messages", ojson::array({msg("user", "Q3"), msg("assistant", "A")})}}.dump() + "\n");
  auto rep = rlhf::run_prep_prompts(chat_opts(in, dir.at("p.h5")));
  EXPECT_EQ(rep.get("rows_written"), 2);
  EXPECT_EQ(rep.get("skipped_prompt_ends_with_assistant"), 1);
  auto tok = rlhf::load_tokenizer(kTok + "qwen3");
  const rlhf::PromptData d = rlhf::PromptData::load(dir.at("p.h5"));
  EXPECT_EQ(d.prompt.row(0), tok->encode("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_EQ(d.prompt.row(1), tok->encode("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
                                         "<|im_start|>assistant\n"));
  // Plain JSONL strings with a template: each a user message.
  const std::string plain = dir.write("plain.jsonl", "\"Q1\"\n{\"question\": \"Q9\"}\n");
  auto o = chat_opts(plain, dir.at("p2.h5"));
  o.format = rlhf::SourceFormat::Jsonl;
  o.prompt_key = "question";
  rlhf::run_prep_prompts(o);
  const rlhf::PromptData d2 = rlhf::PromptData::load(dir.at("p2.h5"));
  ASSERT_EQ(d2.size(), 2);
  EXPECT_EQ(d2.prompt.row(0), d.prompt.row(0));
  EXPECT_EQ(d2.prompt.row(1), tok->encode("<|im_start|>user\nQ9<|im_end|>\n<|im_start|>assistant\n"));
}

TEST(PrepChat, FieldNamesByFlag) {
  TempDir dir;
  const std::string in = dir.write("trl.jsonl", R"({"question": "What is 2+2?", "completion": " 4"})" "\n"
                                                R"({"prompt": "x", "response": "y"})" "\n");
  rlhf::PrepOptions o;
  o.inputs = {in};
  o.out = dir.at("sft.h5");
  o.prompt_key = "question";
  o.response_key = "completion";
  auto rep = rlhf::run_prep_sft(o);
  EXPECT_EQ(rep.get("rows_written"), 1);
  EXPECT_EQ(rep.get("skipped_missing_field"), 1);
  EXPECT_NE(rep.summary().find("field 'question' missing"), std::string::npos) << rep.summary();
  auto tok = rlhf::load_tokenizer("byte");
  const rlhf::SftData d = rlhf::SftData::load(dir.at("sft.h5"));
  EXPECT_FALSE(d.meta.chat());
  EXPECT_FALSE(d.has_targets());
  EXPECT_EQ(tok->decode(d.response.row(0)), " 4");
  // Conversational formats need a template.
  o.format = rlhf::SourceFormat::Messages;
  o.chat_template.clear();
  EXPECT_NE(error_of([&] { rlhf::run_prep_sft(o); }).find("needs a chat template"), std::string::npos);
}

TEST(PrepChat, StrictNamesTheFileAndRow) {
  TempDir dir;
  const std::string in = dir.write("c.jsonl", ojson{{"messages", ojson::array({msg("user", "Q"), msg("assistant", "A")})}}.dump() +
                                                  "\n" R"({"messages": [{"role": "user", "content": 5}]})" "\n");
  auto o = chat_opts(in, dir.at("s.h5"));
  o.strict = true;
  const std::string e = error_of([&] { rlhf::run_prep_sft(o); });
  EXPECT_NE(e.find(in + ":2: field 'messages': message 0 (user) has no string \"content\" (--strict)"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir.at("s.h5")));
}

// ---- templates travel with models -------------------------------------------------------------

TEST(ChatTravel, ModelsAdoptAndThenRequireTheirTemplate) {
  rlhf::TokenizerInfo tok;
  tok.eos = 2;
  rlhf::DatasetMeta plain;
  plain.path = "plain.h5";
  rlhf::adopt_chat_template(tok, plain, "ckpt");  // plain on plain: nothing changes
  EXPECT_TRUE(tok.chat_template.empty());
  rlhf::DatasetMeta chat = plain;
  chat.path = "chat.h5";
  chat.chat_template = "{{ x }}";
  chat.chat_template_name = "mine.jinja";
  chat.end_of_turn = 7;
  rlhf::adopt_chat_template(tok, chat, "ckpt");
  EXPECT_EQ(tok.chat_template, "{{ x }}");
  EXPECT_EQ(tok.end_of_turn, 7);
  EXPECT_EQ(tok.stops, (std::vector<int64_t>{7}));
  rlhf::adopt_chat_template(tok, chat, "ckpt");  // the same template again: fine, stops unchanged
  EXPECT_EQ(tok.stops, (std::vector<int64_t>{7}));
  rlhf::DatasetMeta other = chat;
  other.path = "other.h5";
  other.chat_template = "{{ y }}";
  other.chat_template_name = "chatml";
  std::string e = error_of([&] { rlhf::adopt_chat_template(tok, other, "runs/sft"); });
  EXPECT_NE(e.find("other.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("'chatml'"), std::string::npos) << e;
  EXPECT_NE(e.find("'mine.jinja'"), std::string::npos) << e;
  EXPECT_NE(e.find("runs/sft"), std::string::npos) << e;
  e = error_of([&] { rlhf::adopt_chat_template(tok, plain, "runs/sft"); });
  EXPECT_NE(e.find("plain.h5: the dataset holds plain rows"), std::string::npos) << e;
  // Data meets model: a dataset whose ids may exceed the model's vocabulary is refused up front.
  rlhf::ModelSetup ms;
  ms.cfg.vocab_size = 259;
  rlhf::DatasetMeta big = plain;
  big.path = "big.h5";
  big.vocab_size = 300;
  e = error_of([&] { rlhf::accept_dataset(ms, big); });
  EXPECT_NE(e.find("big.h5: the dataset's ids go up to 299 (vocab_size 300) but the model's vocabulary has 259"),
            std::string::npos) << e;
  big.vocab_size = 259;
  rlhf::accept_dataset(ms, big);
  // Model files carry it.
  const rlhf::TokenizerInfo back = rlhf::TokenizerInfo::from_json(tok.to_json());
  EXPECT_EQ(back.chat_template, tok.chat_template);
  EXPECT_EQ(back.chat_template_name, "mine.jinja");
  EXPECT_EQ(back.end_of_turn, 7);
  EXPECT_FALSE(rlhf::TokenizerInfo::from_json(rlhf::TokenizerInfo{}.to_json()).to_json().contains("chat_template"));
}
