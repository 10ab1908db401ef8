// jinja_ast.h — the syntax tree the parser (jinja_parser.h) builds and the evaluator
// (jinja_eval.h) walks. One node type with a kind; every node keeps the line and column of the
// token it starts at, so runtime errors name a position. Fields a kind does not use stay empty.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/chat/value.h"

namespace rlhf::jinja {

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class K {
    // expressions
    Literal,   // value
    Name,      // name
    Attr,      // a.name
    Item,      // a[b]
    Slice,     // a[b:c:d]: kids = {a, start|null, stop|null, step|null}
    Call,      // a(args, kw)
    Filter,    // a | name(args, kw)
    Test,      // a is [not] name(args)
    Unary,     // name = "-" | "+" | "not"
    Binary,    // name = op: + - * / // % ** ~ and or in "not in" == != < > <= >=
    Cond,      // kids = {then, cond, else|null}
    ListLit,   // kids (tuples too)
    DictLit,   // kids = key, value, key, value...
    // statements
    Text,      // name = the text
    Output,    // {{ a }}
    If,        // branches (cond, body); else_body
    For,       // targets in a [if filter] body else_body; kids = {iter, filter|null}
    Set,       // targets[0] (= name), name (attribute when `set ns.attr`), kids = {value}
    SetBlock,  // targets[0], body
    Macro,     // name, targets = params, kids = defaults (null = none), body
    CallBlock, // kids = {call expr}, targets = caller params, body
    Break,
    Continue,
    Generation,  // {% generation %} ... {% endgeneration %}: body rendered as is
  };
  K k;
  int line = 0, col = 0;
  std::string name;
  bool negated = false;                   // Test: `is not`
  Value value;                            // Literal
  std::vector<NodePtr> kids;              // operands / positional arguments
  std::vector<std::pair<std::string, NodePtr>> kw;  // keyword arguments
  std::vector<std::string> targets;       // loop / set / macro names
  std::vector<std::pair<NodePtr, Body>> branches;   // If
  Body body, else_body;

  Node(K kind, int l, int c) : k(kind), line(l), col(c) {}
};

}  // namespace rlhf::jinja
