// test_chat_template.cpp — the chat-template engine (src/common/chat): the shipped Qwen3 and
// Llama 3 templates render every conversation of tokenizers/chat_cases.jsonl byte for byte as
// the reference renderer did (golden_chat.jsonl); the built-ins' documented outputs; each
// interpreter construct against the output jinja2 gives (values checked with jinja2 3.1 under
// transformers' environment); errors with their template, line and column. (The comparison
// with transformers itself on ~1,260 conversations is tests/scripts/test_chat_hf.sh.)
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/chat/chat_template.h"
#include "common/chat/jinja_eval.h"
#include "support/test_support.h"

namespace {

using ojson = nlohmann::ordered_json;
using rlhf::testing::error_of;
const std::string kTokDir = RLHF_SOURCE_DIR "/../shared/data/tokenizers";

// Renders src with vars (a JSON object) under the name "t".
std::string R(const std::string& src, const std::string& vars = "{}") {
  rlhf::jinja::Dict d;
  const ojson j = ojson::parse(vars);
  for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), rlhf::jinja::from_json(it.value()));
  return rlhf::jinja::Template("t", src).render(d);
}
std::string E(const std::string& src, const std::string& vars = "{}") {
  return error_of([&] { R(src, vars); });
}

class ChatGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ChatGolden, EveryCaseEqualsTheReferenceRendering) {
  const std::string dir = kTokDir + "/" + GetParam();
  std::ifstream cases(kTokDir + "/chat_cases.jsonl"), golden(dir + "/golden_chat.jsonl");
  ASSERT_TRUE(cases.good() && golden.good()) << dir;
  const rlhf::ChatTemplate tpl = rlhf::ChatTemplate::select("auto", dir);
  int n = 0;
  for (std::string c, g; std::getline(cases, c) && std::getline(golden, g); ++n)
    EXPECT_EQ(tpl.render_object(ojson::parse(c)), ojson::parse(g)["text"].get<std::string>())
        << GetParam() << " line " << n + 1;
  EXPECT_EQ(n, 6);
}
INSTANTIATE_TEST_SUITE_P(Tokenizers, ChatGolden, ::testing::Values("qwen3", "llama3"));

TEST(ChatTemplate, QwenThinkingVariablesAndReasoning) {
  const auto tpl = rlhf::ChatTemplate::select("auto", kTokDir + "/qwen3");
  const ojson m = ojson::parse(R"([{"role":"user","content":"q"}])");
  EXPECT_EQ(tpl.render(m, true, ojson::parse(R"({"enable_thinking": false})")),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  const ojson r = ojson::parse(R"([{"role":"user","content":"q"},{"role":"assistant","content":"<think>\nhm\n</think>\n\nA"}])");
  EXPECT_EQ(tpl.render(r, false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nhm\n</think>\n\nA<|im_end|>\n");
}

TEST(ChatTemplate, BuiltinsDocumentedOutputs) {
  const ojson m = ojson::parse(R"([{"role":"system","content":"S"},{"role":"user","content":"Hi"},)"
                               R"({"role":"assistant","content":"Yo"},{"role":"user","content":"Q"}])");
  const std::string tok = kTokDir + "/llama3";  // bos <|begin_of_text|>, eos <|eot_id|>
  EXPECT_EQ(rlhf::ChatTemplate::select("chatml", tok).render(m, true),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo"
            "<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(rlhf::ChatTemplate::select("llama3", tok).render(m, true),
            rlhf::ChatTemplate::select("auto", tok).render(m, true));
  EXPECT_EQ(rlhf::ChatTemplate::select("hh", tok).render(m, true),
            "S\n\nHuman: Hi\n\nAssistant: Yo\n\nHuman: Q\n\nAssistant:");
  const std::string mis = kTokDir + "/mistral";  // <s>, </s>
  EXPECT_EQ(rlhf::ChatTemplate::select("mistral", mis).render(m, false),
            "<s>[INST] S\n\nHi [/INST]Yo</s>[INST] Q [/INST]");
  const ojson bad = ojson::parse(R"([{"role":"assistant","content":"x"}])");
  EXPECT_NE(error_of([&] { rlhf::ChatTemplate::select("mistral", mis).render(bad, false); })
                .find("raise_exception: mistral template: roles must alternate"),
            std::string::npos);
}

TEST(ChatTemplate, SelectErrorsListTheNames) {
  const std::string e1 = error_of([] { rlhf::ChatTemplate::select("auto", kTokDir + "/mistral"); });
  EXPECT_NE(e1.find("has no chat_template"), std::string::npos) << e1;
  EXPECT_NE(e1.find("chatml, hh, llama3, mistral"), std::string::npos) << e1;
  const std::string e2 = error_of([] { rlhf::ChatTemplate::select("vicuna", "byte"); });
  EXPECT_NE(e2.find("unknown chat template 'vicuna'"), std::string::npos) << e2;
  EXPECT_NE(e2.find("chatml, hh, llama3, mistral"), std::string::npos) << e2;
  rlhf::testing::TempDir d;
  std::ofstream(d.path.string() + "/tokenizer_config.json")
      << R"({"eos_token": {"content": "</e>"}, "chat_template": [{"name": "tool_use", "template": "T"},)"
         R"( {"name": "default", "template": "{{ eos_token }}{{ messages|length }}"}]})";
  EXPECT_EQ(rlhf::ChatTemplate::select("auto", d.path.string()).render(ojson::array({ojson::object()}), false), "</e>1");
  std::ofstream(d.path.string() + "/my.jinja") << "{{ messages[0].content }}!\n";
  EXPECT_EQ(rlhf::ChatTemplate::select(d.path.string() + "/my.jinja", d.path.string())
                .render(ojson::parse(R"([{"role":"user","content":"x"}])"), false),
            "x!");  // the trailing newline of the file is dropped, as jinja2 does
  EXPECT_NE(error_of([] { rlhf::ChatTemplate("t", "x").render(ojson::object(), false); })
                .find("messages must be a list"),
            std::string::npos);
}

TEST(Jinja, TextOutputCommentsAndWhitespaceControl) {
  EXPECT_EQ(R("a{{ 1 }}b{# c #}d"), "a1bd");
  EXPECT_EQ(R("a  {{- 1 -}}  \n b"), "a1b");
  EXPECT_EQ(R("{% if true %}\nx\n{% endif %}\ny"), "x\ny");        // trim_blocks
  EXPECT_EQ(R("  {% if true %}x{% endif %}"), "x");                 // lstrip_blocks
  EXPECT_EQ(R("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");       // + disables both
  EXPECT_EQ(R("a {{ 1 }} {% if 1 %}b{% endif %}"), "a 1 b");       // not at line start
  EXPECT_EQ(R("{# c #}\nx"), "x");
  EXPECT_EQ(R("x\r\ny\n"), "x\ny");                                  // newline normalisation
  EXPECT_EQ(R("{{ {'a': 1}['a'] }}"), "1");                          // }} inside brackets
}

TEST(Jinja, IfForLoopVariablesAndElse) {
  EXPECT_EQ(R("{% if x == 1 %}a{% elif x == 2 %}b{% else %}c{% endif %}", R"({"x": 2})"), "b");
  EXPECT_EQ(R("{% for i in [5, 6, 7] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
              "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(R("{% for i in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for i in range(6) if i % 2 %}{{ i }}{{ loop.length }} {% endfor %}"), "13 33 53 ");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}"), "a=1,b=2,");
  EXPECT_EQ(R("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}"
              "{% endif %}{{ i }}{% endfor %}"), "02");
  EXPECT_EQ(R("{% for i in 'ab' %}{{ loop.previtem }}{{ i }}{% endfor %}"), "aab");
}

TEST(Jinja, SetScopesNamespaceBlockSetAndMacros) {
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(R("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"), "4");
  EXPECT_EQ(R("{% set b %}in{{ 1 + 1 }}{% endset %}[{{ b }}]"), "[in2]");
  EXPECT_EQ(R("{% macro m(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}"), "<1B><12>");
  EXPECT_EQ(R("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}body{% endcall %}"), "[body]");
}

TEST(Jinja, LiteralsOperatorsAndPrecedence) {
  EXPECT_EQ(R("{{ 'a' 'b' }}|{{ \"q\\n\" }}|{{ 1.5 }}|{{ none }}|{{ True }}|{{ [1, 'x'] }}|{{ {'k': none} }}|{{ (1, 2)|length }}"),
            "ab|q\n|1.5|None|True|[1, 'x']|{'k': None}|2");
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 3 }} {{ 1 + 2 * 3 }} {{ 4 / 2 }}"),
            "3 -4 1 2 3.5 8 7 2.0");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }}"), "a1None abab [1, 2]");
  EXPECT_EQ(R("{{ 1 < 2 }} {{ 'b' >= 'a' }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 3 not in [1] }} {{ 'k' in {'k': 1} }}"),
            "True True True True True True");
  EXPECT_EQ(R("{{ not 1 and 2 }} {{ 0 or 'x' }} {{ 1 and 2 }} {{ not (1 and 0) }}"), "False x 2 True");
  EXPECT_EQ(R("{{ 'y' if 0 else 'n' }}{{ 'z' if 0 }}."), "n.");
  EXPECT_EQ(R("{{ messages|length - 1 }}", R"({"messages": [1, 2, 3]})"), "2");
}

TEST(Jinja, AccessSlicingAndUndefined) {
  const std::string v = R"({"d": {"role": "user", "items": 5}, "l": [1, 2, 3, 4]})";
  EXPECT_EQ(R("{{ d.role }}{{ d['role'] }}{{ d['items'] }}{{ l[-1] }}{{ l.0 }}", v), "useruser541");
  EXPECT_EQ(R("{{ l[::-1] }}{{ l[1:3] }}{{ l[:-1] }}{{ 'abc'[::-1] }}{{ 'héllo'[1:3] }}", v),
            "[4, 3, 2, 1][2, 3][1, 2, 3]cbaél");
  EXPECT_EQ(R("[{{ nope }}][{{ d.nope }}][{{ l[9] }}]{{ nope is defined }}{{ d.nope is undefined }}", v),
            "[][][]FalseTrue");
  EXPECT_EQ(R("{% for x in nope %}a{% endfor %}{{ nope|length }}{{ nope == nope }}{{ none.x is defined }}"), "0TrueFalse");
  EXPECT_EQ(E("{{ nope.x }}"), "template 't' line 1 column 8: 'nope' is undefined");
  EXPECT_EQ(E("\n  {{ 'a' + d.x }}", v), "template 't' line 2 column 10: 'dict object' has no attribute 'x'");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}"
              "{{ [] is iterable }}{{ 1.5 is number }}{{ 'a' is sequence }}{{ true is true }}{{ 0 is false }}"
              "{{ false is boolean }}{{ 3 is odd }}{{ x is not none }}{{ 1 is eq 1 }}{{ 1 is in [1] }}",
              R"({"x": 1})"),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrue");
}

TEST(Jinja, FiltersAndMethods) {
  EXPECT_EQ(R("{{ '  a b \u00a0'|trim }}|{{ 'xxaxx'|trim('x') }}|{{ [1,2]|length }}|{{ 'ab'|count }}|{{ 'aB'|upper }}"
              "{{ 'aB'|lower }}|{{ 'hello world'|title }}|{{ 'hI'|capitalize }}"),
            "a b|a|2|2|ABab|Hello World|Hi");
  EXPECT_EQ(R("{{ x|default('d') }}{{ ''|d('e', true) }}{{ [1,2]|join('-') }}{{ 'aaa'|replace('a','b',2) }}"
              "{{ [1,2]|first }}{{ [1,2]|last }}{{ 'ab'|list }}{% for k, v in {'a':1}|items %}{{ k }}{{ v }}{% endfor %}"),
            "de1-2bba12['a', 'b']a1");
  EXPECT_EQ(R("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='c')|list }}"
              "{{ m|rejectattr('role', 'eq', 'user')|map(attribute='c')|join }}{{ m|map(attribute='z', default='?')|join }}"
              "{{ [1,'2']|map('string')|list }}{{ '42'|int + 1 }}{{ 3|string }}",
              R"({"m": [{"role": "user", "c": 1}, {"role": "bot", "c": 2}]})"),
            "[1]2??['1', '2']433");
  EXPECT_EQ(R("{{ {'b': [1, 'é\"'], 'a': none}|tojson }}|{{ {'a': [1]}|tojson(indent=2) }}|{{ 1.0|tojson }}"),
            "{\"b\": [1, \"é\\\"\"], \"a\": null}|{\n  \"a\": [\n    1\n  ]\n}|1.0");
  EXPECT_EQ(R("{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x', 'b')) }}[{{ ' a '.strip() }}][{{ '\\na'.lstrip('\\n') }}]"
              "[{{ 'a\\n'.rstrip() }}]{{ 'a,b'.split(',') }}{{ ' a  b '.split() }}{{ 'a</t>b'.split('</t>')[-1] }}"
              "{{ 'aa'.replace('a', 'b') }}{{ 'a'.upper() }}{{ 'A'.lower() }}{{ 'a b'.title() }}"),
            "TrueTrue[a][a][a]['a', 'b']['a', 'b']bbbAaA B");
  EXPECT_EQ(R("{{ d.get('a') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d.values()|list }}{{ d.items()|list|length }}",
              R"({"d": {"a": 1}})"),
            "10['a'][1]1");
}

TEST(Jinja, ErrorsNameTemplateLineAndColumn) {
  EXPECT_EQ(E("ab\n{% include 'x' %}"), "template 't' line 2 column 4: unsupported tag 'include'");
  EXPECT_EQ(E("{% if x %}\n  {{ 1 + }}\n{% endif %}"), "template 't' line 2 column 10: unexpected end of print statement");
  EXPECT_EQ(E("{{ x|nofilter }}"), "template 't' line 1 column 5: no filter named 'nofilter'");
  EXPECT_EQ(E("{{ x is nothing }}"), "template 't' line 1 column 6: no test named 'nothing'");
  EXPECT_EQ(E("{% for x in y %}"), "template 't' line 1 column 17: unexpected end of template, expected 'else'");
  EXPECT_EQ(E("{% endif %}"), "template 't' line 1 column 4: unexpected 'endif'");
  EXPECT_EQ(E("x {{ 'abc }}"), "template 't' line 1 column 6: unterminated string literal");
  EXPECT_EQ(E("{# never closed"), "template 't' line 1 column 1: missing end of comment tag '#}'");
  EXPECT_EQ(E("{% for x in [1] recursive %}{% endfor %}"), "template 't' line 1 column 17: unsupported: recursive for loops");
  EXPECT_EQ(E("\n\n   {{ raise_exception('Bad role: ' ~ r) }}", R"({"r": "tool"})"),
            "template 't' line 3 column 22: raise_exception: Bad role: tool");
  EXPECT_EQ(E("{{ 1 + 'a' }}"), "template 't' line 1 column 6: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_EQ(E("{% set n = 1 %}{% set n.x = 2 %}"), "template 't' line 1 column 19: cannot assign attribute on non-namespace object 'n'");
}

}  // namespace
