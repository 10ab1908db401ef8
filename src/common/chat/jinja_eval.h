// jinja_eval.h — a compiled Jinja template (lexer -> parser -> tree-walking evaluator) of the
// subset chat templates use (jinja_lexer.h, jinja_parser.h, jinja_builtins.h list it), with
// jinja2's semantics under Hugging Face's environment: autoescape off, default Undefined
// (printing it gives "", `x.y` / `x + 1` / `x()` on an undefined x is an error), `set` inside a
// for-loop body stays in that iteration (use namespace()), `loop` (index, index0, revindex,
// revindex0, first, last, length, previtem, nextitem, cycle), break / continue.
// Construction lexes and parses and checks every filter and test name; errors name the
// template, line and column (rlhf::Error). render() errors too name the position of the
// expression that failed; raise_exception(msg) gives "template 'NAME' line L column C:
// raise_exception: msg". A Template is immutable: render() may run concurrently.
#pragma once
#include <string>

#include "common/chat/jinja_ast.h"
#include "common/chat/value.h"

namespace rlhf::jinja {

class Template {
 public:
  Template(std::string name, const std::string& source);
  // vars: the template's variables (messages, add_generation_prompt, bos_token, ...); the
  // globals (range, namespace, raise_exception, ...) are added underneath them.
  std::string render(const Dict& vars) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Body body_;
};

}  // namespace rlhf::jinja
