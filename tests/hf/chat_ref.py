#!/usr/bin/env python3
"""Reference side of tests/scripts/test_chat_hf.sh: Hugging Face transformers' own
apply_chat_template(..., tokenize=False) on the tokenizer folders of ../shared/data.

  chat_ref.py conversations --data DATA OUT   write the test conversations (JSONL inputs of
                                              `rlhf_prep chat-template`)
  chat_ref.py render TOKDIR IN OUT            {"text"} per input line, by AutoTokenizer's
                                              apply_chat_template (the template, bos/eos and
                                              the jinja2 environment of transformers itself)
  chat_ref.py compare REF OURS --name NAME    exit 1 unless every line is equal (prints N/M)

Conversations: tokenizers/chat_cases.jsonl (as written and with the generation flag flipped),
then every root->leaf path of the Open Assistant trees (oasst/en_100_tree.jsonl; prompter ->
user, assistant -> assistant; deleted messages and their subtrees skipped) with at least two
messages, each with and without the generation prompt; some carry enable_thinking=false.
"""
import argparse
import json
import sys


def tree_paths(node, prefix, out):
    if node.get("deleted"):
        return
    role = "user" if node["role"] == "prompter" else "assistant"
    path = prefix + [{"role": role, "content": node["text"]}]
    kids = [k for k in node.get("replies", []) if not k.get("deleted")]
    if not kids:
        out.append(path)
    for k in kids:
        tree_paths(k, path, out)


def conversations(args):
    rows = []
    with open(f"{args.data}/tokenizers/chat_cases.jsonl", encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            rows.append(c)
            rows.append({**c, "add_generation_prompt": not c["add_generation_prompt"]})
    paths = []
    with open(f"{args.data}/oasst/en_100_tree.jsonl", encoding="utf-8") as f:
        for line in f:
            tree_paths(json.loads(line)["prompt"], [], paths)
    paths = [p for p in paths if len(p) >= 2]
    for i, p in enumerate(paths):
        for gen in (False, True):
            row = {"messages": p, "add_generation_prompt": gen}
            if i % 7 == 3:
                row["enable_thinking"] = False
            rows.append(row)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"chat_ref: {len(rows)} inputs ({len(paths)} OASST conversations with >= 2 messages, "
          f"{sum(len(p) > 2 for p in paths)} with more than one turn)", file=sys.stderr)


def render(args):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokdir)
    with open(args.inp, encoding="utf-8") as f, open(args.out, "w", encoding="utf-8") as out:
        for line in f:
            row = json.loads(line)
            msgs = row.pop("messages")
            gen = row.pop("add_generation_prompt", False)
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **row)
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


def compare(args):
    with open(args.ref, encoding="utf-8") as f:
        ref = [json.loads(l)["text"] for l in f]
    with open(args.ours, encoding="utf-8") as f:
        ours = [json.loads(l)["text"] for l in f]
    same = sum(a == b for a, b in zip(ref, ours))
    ok = same == len(ref) == len(ours)
    print(f"{args.name}: {same}/{len(ref)} renderings equal to transformers' apply_chat_template"
          + ("" if len(ref) == len(ours) else f" (ours has {len(ours)} lines)"))
    for i, (a, b) in enumerate(zip(ref, ours)):
        if a != b:
            print(f"  first difference, line {i + 1}:\n    ref : {a!r}\n    ours: {b!r}")
            break
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("conversations")
    c.add_argument("--data", required=True)
    c.add_argument("out")
    r = sub.add_parser("render")
    r.add_argument("tokdir")
    r.add_argument("inp")
    r.add_argument("out")
    m = sub.add_parser("compare")
    m.add_argument("ref")
    m.add_argument("ours")
    m.add_argument("--name", required=True)
    args = ap.parse_args()
    {"conversations": conversations, "render": render, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    main()
