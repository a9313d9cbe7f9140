#!/usr/bin/env python3
"""Writes tests/fixtures/python-re/cases.json: what Python's `re` does with the kinds of
patterns PEFT adapter configs hold (target_modules / exclude_modules strings, rank_pattern and
alpha_pattern keys), the reference for lorasched's PCRE2 translation
(core/checkpoint/python_regex.hpp, tests/unit/checkpoint/test_python_regex.cpp).

For every pattern: whether re.compile accepts it, and for every subject whether re.fullmatch
and re.match find a match. Patterns Python accepts but lorasched refuses on purpose (syntax
PCRE2 cannot honour) carry "lorasched": "refuse" and the reason. Run with any Python >= 3.11
(no packages needed); the output records the version. The tests read the file, never Python.
"""

import json
import os
import re
import sys
import warnings

SUBJECTS = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.mlp.down_proj",
    "model.layers.12.mlp.up_proj",
    "model.layers.3.mlp",
    "model.embed_tokens",
    "lm_head",
    "Q_PROJ",
    "",
    "a",
    "a\n",
    "ab",
    "abcd",
    "aaa",
    "aa",
    "A",
    "a{}",
    "a{x}",
    "{",
    "x{1,2",
    "x.y",
    "\x0b",
    "\x08",
    "]",
    ":",
    "[",
    "ä",
    "٣",
    "é\n",
]

# Python 3.14 added \z (same as \Z); lorasched accepts it like 3.14. On an older Python the
# expected matches are those of the pattern given here.
SINCE_314 = {r"\z": r"\Z", r".*\.down_proj\z": r".*\.down_proj\Z"}

# (pattern, why lorasched refuses it) -- Python accepts all of these.
REFUSED = {
    r"\N{LATIN SMALL LETTER A}": "named Unicode escapes",
    r"(?a)\w+": "the ASCII flag",
    r"a{70000}": "repeat counts above PCRE2's 65535",
}

PATTERNS = [
    # PEFT-style target_modules regexes
    r".*\.(q_proj|v_proj)",
    r".*\.(q_proj|down_proj)\Z",
    r"down_proj\Z",
    r"(.*\.)?(down_proj\Z)$",
    r"(.*\.)?(mlp\.down_proj)$",
    r"\A.*q_proj\Z",
    r"model\.layers\.\d+\.mlp\..*",
    r"model\.layers\.(0|1)\.self_attn\.(q|v)_proj",
    r".*(?P<proj>q|v)_proj",
    r"(?P<a>.)(?P=a)",
    r"(a)\1",
    r"(a)(b)?(?(2)cd|)",
    r".*(?<!self_attn)\.\w+_proj",
    r"(?=.*layers\.1).*",
    r"(?!lm_).*",
    r"(?>a+)",
    r"a++",
    r"a*?",
    r"(?:a|ab)(?:c|bcd)(?:d*)",
    r"a|ab",
    # escapes and classes
    r"\w+",
    r"\W",
    r"\d",
    r"\s",
    r"\bq_proj",
    r"[\d.]+",
    r"[]a]",
    r"[^]a]",
    r"[[:alpha:]]+",
    r"[:a]+",
    r"[.a]+",
    r"[=a]+",
    r"[a-c]+",
    r"[\w.-]+",
    r"\x41",
    r"\u0041",
    r"\U00000041",
    r"\101",
    r"\0",
    r"\012",
    r"[\101]",
    r"[\0]",
    r"\v",
    r"[\v]",
    r"[\b]",
    r"\a",
    r"\.",
    r"\-",
    r"\ä",
    # braces
    r"a{2}",
    r"a{,2}",
    r"a{,}",
    r"a{2,}",
    r"a{1,2}?",
    r"a{}",
    r"a{x}",
    r"{",
    r"x{1,2",
    r"a{ 2}",
    # anchors and newlines
    r"a$",
    r"a\Z",
    r"^a",
    r".*",
    r"(?s).*",
    r"(?m)a$",
    # flags
    r"(?i)q_proj",
    r"(?i)Q_PROJ",
    r"(?i:q)_PROJ",
    r"(?-i:q)_PROJ",
    r"(?u)\w+",
    r"(?x) model \. layers # a comment ( ] \Z\n .*",
    r"(?x)a b",
    r"(?x)a\ b",
    r"(?x)[a ]+",
    r"(?x)a *",
    r"(?i)(?m)a$",
    r"(?#comment)a",
    r"a(?#comment)*",
    # Python rejects these
    r"(",
    r")",
    r"[a",
    r"*a",
    r"a**",
    r"a{2}{3}",
    r"(?x)a* ?",
    r"^*",
    r"\b+",
    r"(?i)*",
    r"\p{L}",
    r"\e",
    r"\h",
    r"\K",
    r"\Q",
    r"\G",
    r"\z",
    r"\8",
    r"(a)\2",
    r"[\8]",
    r"[\A]",
    r"\x4",
    r"\u004",
    r"\U0011ffff",
    r"\400",
    r"\N",
    r"(?<n>a)",
    r"(?P>a)",
    r"(?|a)",
    r"(?R)",
    r"(?1)",
    r"(?C1)",
    r"(*FAIL)",
    r"(*ACCEPT)a",
    r"a(?i)",
    r"(?-i)a",
    r"(?L)a",
    r"(?i-i:a)",
    r"a{3,2}",
    r"a\\",
    "a\\",
    r"(?(R)a|b)",
    r"(?(DEFINE)a)",
] + sorted(REFUSED) + [r".*\.down_proj\z"]


def main():
    warnings.simplefilter("ignore", FutureWarning)  # "Possible nested set": Python still parses it
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "python-re", "cases.json")
    cases = []
    for p in PATTERNS:
        case = {"pattern": p}
        try:
            rx = re.compile(p)
        except re.error as e:
            if p in SINCE_314:
                case["python"] = "ok"
                case["python_note"] = f"Python 3.14's \\z; computed as {SINCE_314[p]}"
                rx = re.compile(SINCE_314[p])
                case["fullmatch"] = [s for s in SUBJECTS if rx.fullmatch(s)]
                case["match"] = [s for s in SUBJECTS if rx.match(s)]
                cases.append(case)
                continue
            case["python"] = "error"
            case["error"] = str(e)
            cases.append(case)
            continue
        case["python"] = "ok"
        case["fullmatch"] = [s for s in SUBJECTS if rx.fullmatch(s)]
        case["match"] = [s for s in SUBJECTS if rx.match(s)]
        if p in REFUSED:
            case["lorasched"] = "refuse"
            case["why"] = REFUSED[p]
        cases.append(case)
    doc = {
        "python": sys.version.split()[0],
        "subjects": SUBJECTS,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{out}: {len(cases)} patterns, {len(SUBJECTS)} subjects")


if __name__ == "__main__":
    main()
