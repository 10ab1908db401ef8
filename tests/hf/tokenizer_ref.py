#!/usr/bin/env python3
"""tokenizer_ref.py — Hugging Face reference for our tokenizer.json encoder (tests only).

  corpus OUT.jsonl [N] [--data DIR]   >= N (default 6000) lines {"text": ...} of real text from
        DIR (default $RLHF_DATA, else ../shared/data next to the repository): every line of
        tokenizers/cases.jsonl, 13 constructed texts (EXTRA below), every Open Assistant
        message (oasst/en_100_tree.jsonl, trees walked depth-first), then hh-rlhf dialogues
        (chosen, rejected) alternating with as many tinyshakespeare paragraphs until N.
        Whole texts (multi-line), capped at ~2000 chars; deterministic.
  encode TOKENIZER IN.jsonl OUT.jsonl [--add-special-tokens]
        ids from the `tokenizers` package: Tokenizer.from_file(tokenizer.json).encode(text,
        add_special_tokens=...), one JSON array per line. TOKENIZER: tokenizer.json or its folder.
        IN lines: a JSON string or {"text": ...}.
  compare REF.jsonl OURS.jsonl IN.jsonl [--name NAME]
        line-by-line id comparison; prints the first 10 mismatches (text, first differing
        position, a window of both lists) and "NAME: K/M lines equal"; exit 1 on any mismatch or count skew.
  decode-check TOKENIZER IDS.jsonl OURS.jsonl [--name NAME] [--keep-special]
        OURS (one JSON string per line, our decode of IDS) vs the `tokenizers` package's
        decode(ids, skip_special_tokens=True), compared as UTF-8 bytes; same report and exit code.

Why the `tokenizers` package and not transformers' AutoTokenizer: the package runs tokenizer.json
exactly as written (the file is the spec). transformers 5.x rebuilds some pipelines from
tokenizer_config.json's tokenizer_class instead: for Mistral's LlamaTokenizer it replaces the
Prepend+Replace normalizer by a Metaspace pre-tokenizer, which gives other ids for text starting
with spaces (" " -> [28705] instead of tokenizer.json's [259]). Its decode may also apply
clean_up_tokenization_spaces (llama3's tokenizer_config.json sets it); the package's never does.
"""
import gzip
import json
import os
import sys

CAP = 2000  # characters per corpus text
# Constructed texts. Non-English sentences (the real texts are nearly all English): scripts with
# combining marks (\p{M} is outside the pre-tokenizer regex's \p{L}), right-to-left text, and
# words that Llama 3's ignore_merges takes whole from the vocabulary (" việc", " nhiều", " Việt",
# " ایران", " jeho": no English text of the corpus reaches that path).
EXTRA = [
    "Việt Nam có nhiều điều thú vị; việc hợp tác này là một ngoại lệ đặc biệt, tất nhiên.",
    "Bu proje geliştirilmektedir ve yarın tamamlandı olarak işaretlenecektir; kitaplardan birini okudum.",
    "ایران کشوری در غرب آسیا است و پایتخت ایران تهران است.",
    "Москва — столица России; характер этого города трудно описать словами.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και μία από τις αρχαιότερες πόλεις.",
    "हिन्दी भारत की एक प्रमुख भाषा है, और यह देवनागरी लिपि में लिखी जाती है।",
    "اللغة العربية لغة رسمية في أكثر من عشرين دولة.",
    "한국어는 대한민국의 공용어입니다. 서울은 수도입니다.",
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย",
    "עברית היא שפה שמית שנכתבת מימין לשמאל.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy, to je jeho kůň. Zażółć gęślą jaźń.",
    "Ça coûte 12,50 € — « très cher » ! ¿Qué tal? Straße, Æsir, Ōsaka.",
    # Qwen3's non-special added tokens: matched in text like special ones, but kept by
    # decode(skip_special_tokens=True) (only <|im_start|>, <|endoftext|>... are dropped).
    "<|im_start|>assistant\n<think>\nThe user wants JSON.\n</think>\n\n<tool_call>\n"
    "{\"name\": \"f\"}\n</tool_call><|im_end|>",
]
MAX_SHOWN = 10  # mismatches printed in full per comparison


def die(msg):
    sys.exit(f"tokenizer_ref.py: error: {msg}")


def opts(argv, flags=(), valued=()):
    """Split argv into positionals and options (flags -> True, valued -> next arg)."""
    pos, got, i = [], {}, 0
    while i < len(argv):
        a = argv[i]
        if a in flags:
            got[a] = True
        elif a in valued:
            if i + 1 >= len(argv):
                die(f"{a} needs a value")
            got[a] = argv[i + 1]
            i += 1
        elif a.startswith("--"):
            die(f"unknown option {a}")
        else:
            pos.append(a)
        i += 1
    return pos, got


def cap(text):
    """At most CAP chars, cut at a line break (else a space) in the last half when there is one."""
    if len(text) <= CAP:
        return text
    head = text[:CAP]
    for sep in ("\n", " "):
        k = head.rfind(sep)
        if k >= CAP // 2:
            return head[:k]
    return head


def read_texts(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            v = json.loads(line)
            if isinstance(v, dict):
                v = v.get("text")
            if not isinstance(v, str):
                die(f"{path}:{n}: expected a JSON string or {{\"text\": ...}}")
            out.append(v)
    return out


def read_jsonl(path):
    """One JSON value per line; undecodable UTF-8 is kept (surrogateescape) for byte comparison."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line.decode("utf-8", "surrogateescape")))
        except ValueError as e:
            die(f"{path}:{n}: not JSON ({e}): {line[:80]!r}")
    return out


def load_tokenizer(path):
    from tokenizers import Tokenizer
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    return Tokenizer.from_file(path)


def cmd_corpus(argv):
    pos, o = opts(argv, valued=("--data",))
    if not 1 <= len(pos) <= 2:
        die("usage: corpus OUT.jsonl [N] [--data DIR]")
    want = int(pos[1]) if len(pos) > 1 else 6000
    here = os.path.dirname(os.path.abspath(__file__))
    data = o.get("--data") or os.environ.get("RLHF_DATA") or os.path.join(here, "../../../shared/data")
    texts, counts = [], {}

    def add(source, items):
        items = [cap(t) for t in items]
        texts.extend(items)
        counts[source] = counts.get(source, 0) + len(items)

    add("cases", read_texts(os.path.join(data, "tokenizers/cases.jsonl")))
    add("extra", EXTRA)
    oasst = []

    def walk(msg):
        oasst.append(msg["text"])
        for r in msg.get("replies", []):
            walk(r)
    with open(os.path.join(data, "oasst/en_100_tree.jsonl"), encoding="utf-8") as f:
        for line in f:
            walk(json.loads(line)["prompt"])
    add("oasst", oasst)
    with gzip.open(os.path.join(data, "hh-rlhf/harmless-base-test.jsonl.gz"), "rt", encoding="utf-8") as f:
        hh = [json.loads(line) for line in f]
    with open(os.path.join(data, "corpus/tinyshakespeare.txt"), encoding="utf-8") as f:
        paras = [p for p in f.read().split("\n\n") if p.strip()]
    i = 0  # per step: one hh-rlhf pair, two tinyshakespeare paragraphs
    while len(texts) < want and (i < len(hh) or 2 * i < len(paras)):
        add("hh-rlhf", [t for d in hh[i:i + 1] for t in (d["chosen"], d["rejected"])])
        add("tinyshakespeare", paras[2 * i:2 * i + 2])
        i += 1
    with open(pos[0], "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    print(f"corpus: {len(texts)} texts ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
          f"{sum(len(t.encode()) for t in texts)} bytes -> {pos[0]}", file=sys.stderr)
    if len(texts) < want:
        print(f"corpus: warning: only {len(texts)} texts available (asked for {want})", file=sys.stderr)


def cmd_encode(argv):
    pos, o = opts(argv, flags=("--add-special-tokens",))
    if len(pos) != 3:
        die("usage: encode TOKENIZER IN.jsonl OUT.jsonl [--add-special-tokens]")
    tok = load_tokenizer(pos[0])
    texts = read_texts(pos[1])
    encs = tok.encode_batch(texts, add_special_tokens=bool(o.get("--add-special-tokens")))
    with open(pos[2], "w") as f:
        for e in encs:
            f.write(json.dumps(e.ids, separators=(",", ":")) + "\n")


def window(ids, k, w=6):
    return ("..." if k > w else "") + str(ids[max(0, k - w):k + w]) + ("..." if k + w < len(ids) else "")


def report(name, equal, total, extra_fail=False):
    print(f"{name}: {equal}/{total} lines equal")
    return 0 if equal == total and not extra_fail else 1


def cmd_compare(argv):
    pos, o = opts(argv, valued=("--name",))
    if len(pos) != 3:
        die("usage: compare REF.jsonl OURS.jsonl IN.jsonl [--name NAME]")
    name = o.get("--name", os.path.basename(pos[1]))
    ref, ours, texts = read_jsonl(pos[0]), read_jsonl(pos[1]), read_texts(pos[2])
    skew = not len(ref) == len(ours) == len(texts)
    if skew:
        print(f"{name}: line counts differ: ref {len(ref)}, ours {len(ours)}, input {len(texts)}")
    equal = shown = 0
    for n, (r, u) in enumerate(zip(ref, ours), 1):
        if r == u:
            equal += 1
            continue
        shown += 1
        if shown > MAX_SHOWN:
            continue
        k = next((i for i, (a, b) in enumerate(zip(r, u)) if a != b), min(len(r), len(u)))
        text = texts[n - 1] if n <= len(texts) else None
        print(f"{name}: line {n} differs at position {k} (ref {len(r)} ids, ours {len(u)}): "
              f"{repr(text)[:200]}\n  ref  {window(r, k)}\n  ours {window(u, k)}")
    if shown > MAX_SHOWN:
        print(f"{name}: ... {shown - MAX_SHOWN} more mismatching lines not shown")
    return report(name, equal, max(len(ref), len(ours)), skew)


def cmd_decode_check(argv):
    pos, o = opts(argv, flags=("--keep-special",), valued=("--name",))
    if len(pos) != 3:
        die("usage: decode-check TOKENIZER IDS.jsonl OURS.jsonl [--name NAME] [--keep-special]")
    name = o.get("--name", os.path.basename(pos[2]))
    tok = load_tokenizer(pos[0])
    ids, ours = read_jsonl(pos[1]), read_jsonl(pos[2])
    skew = len(ids) != len(ours)
    if skew:
        print(f"{name}: line counts differ: ids {len(ids)}, ours {len(ours)}")
    refs = tok.decode_batch(ids[:len(ours)], skip_special_tokens=not o.get("--keep-special"))
    equal = shown = 0
    for n, (r, u) in enumerate(zip(refs, ours), 1):
        rb, ub = r.encode("utf-8"), u.encode("utf-8", "surrogateescape")
        if rb == ub:
            equal += 1
            continue
        shown += 1
        if shown <= MAX_SHOWN:
            k = next((i for i, (a, b) in enumerate(zip(rb, ub)) if a != b), min(len(rb), len(ub)))
            print(f"{name}: line {n} decodes differently from byte {k} (ref {len(rb)} bytes, "
                  f"ours {len(ub)}):\n  ref  {rb[max(0, k - 40):k + 40]!r}\n  ours {ub[max(0, k - 40):k + 40]!r}")
    if shown > MAX_SHOWN:
        print(f"{name}: ... {shown - MAX_SHOWN} more mismatching lines not shown")
    return report(name, equal, max(len(ids), len(ours)), skew)


def main():
    cmds = {"corpus": cmd_corpus, "encode": cmd_encode, "compare": cmd_compare,
            "decode-check": cmd_decode_check}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        die("usage: tokenizer_ref.py {" + "|".join(cmds) + "} ... (see the docstring)")
    sys.exit(cmds[sys.argv[1]](sys.argv[2:]) or 0)


if __name__ == "__main__":
    main()
