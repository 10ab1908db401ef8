// jinja_parser.h — tokens (jinja_lexer.h) -> syntax tree (jinja_ast.h), with jinja2's grammar
// and operator precedence (lowest first): `a if c else b`; or; and; not; comparisons / in /
// not in; + -; ~; * / // %; **; unary - +; then postfix .attr [index] [a:b:c] (call), filters
// `| f(args)` and tests `is [not] t(args)`. Literals: strings (adjacent ones joined), ints,
// floats, true/false/none (any case jinja2 accepts), lists, tuples, dicts.
// Statements: if/elif/else/endif; for a[, b] in x [if cond] ... [else] ... endfor; set x = e;
// set ns.attr = e; set x %}...{% endset; macro/endmacro; call/endcall; break; continue;
// generation/endgeneration (transformers' assistant-mask tag, rendered as its body).
// Errors: rlhf::Error "template 'NAME' line L column C: ..." for a parse error or a construct
// outside this subset (e.g. `{% include %}`, `{% raw %}`, `for ... recursive`, `*args`).
#pragma once
#include <string>
#include <vector>

#include "common/chat/jinja_ast.h"
#include "common/chat/jinja_lexer.h"

namespace rlhf::jinja {

Body parse(const std::vector<Token>& tokens, const std::string& name);

}  // namespace rlhf::jinja
