"""Writes runtime/data/generated/filter_tables.rs: every table kiln's port of datatrove's English
word tokenizer needs, taken from the installed libraries themselves so that nothing is
transcribed by hand.

datatrove 0.10.1 splits English words with `SpaCyTokenizer("en")`, i.e. spaCy's rule-based
tokenizer of `spacy.blank("en")` (prefix, suffix and infix expressions, the URL match, the
tokenizer exceptions and the special-case matcher), then drops whitespace tokens. The tables:

- character classes, computed by testing every code point against the very expressions spaCy
  compiles (and against Python's `str` predicates, for the Python built-ins the filters call);
- the literal affixes, currencies and units;
- the tokenizer exceptions (special cases) and the phrase-matcher patterns spaCy builds from
  them (each exception's tokenization without special cases, for the exceptions that
  `faster_heuristics` keeps);
- the URL expression, with Python's `\\w` and `\\d` replaced by explicit classes;
- datatrove's PUNCTUATION_SET and TERMINAL_PUNCTUATION, and the sentencizer's punctuation.

Usage: `python filters_gen_tables.py > ../../generated/filter_tables.rs` (tests/filters.rs runs it
and compares its output with the checked-in file).
"""

import re
import sys
import unicodedata

import datatrove
import spacy
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from spacy.lang import char_classes as cc
from spacy.lang.en import English
from spacy.lang.tokenizer_exceptions import URL_PATTERN
from spacy.pipeline.sentencizer import Sentencizer
from spacy.symbols import ORTH
from spacy.tokenizer import Tokenizer

MAX_CP = 0x110000


def code_points():
    for c in range(MAX_CP):
        if 0xD800 <= c <= 0xDFFF:
            continue
        yield c


def ranges_of(pred):
    out = []
    for c in code_points():
        if pred(chr(c)):
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
    return out


def class_ranges(cls_pattern):
    rx = re.compile(cls_pattern)
    return ranges_of(lambda ch: rx.fullmatch(ch) is not None)


def rust_str(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or 0x7F <= o < 0xA0 or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cf", "Co", "Cn", "Mn", "Me", "Mc"):
            out.append("\\u{%x}" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def emit_set(name, doc, ranges):
    ascii_bits = 0
    for lo, hi in ranges:
        for c in range(lo, min(hi, 127) + 1):
            ascii_bits |= 1 << c
    body = ", ".join("(0x%X, 0x%X)" % (lo, hi) for lo, hi in ranges)
    print(f"/// {doc}")
    print(f"pub static {name}: CharSet = CharSet {{")
    print(f"    ascii: 0x{ascii_bits:032X},")
    print(f"    ranges: &[{body}],")
    print("};")
    print()


def regex_class_body(ranges):
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append("\\x{%X}" % lo)
        else:
            parts.append("\\x{%X}-\\x{%X}" % (lo, hi))
    return "".join(parts)


def literal(alt):
    """The string an alternative matches if it is a plain literal (escapes allowed), else None."""
    if re.search(r"[()\[\]+*?.^$|{}]", re.sub(r"\\.", "", alt)):
        return None
    return re.sub(r"\\(.)", r"\1", alt)


def main():
    nlp = spacy.blank("en")
    tok = nlp.tokenizer
    d = English.Defaults
    prefixes, suffixes, infixes = list(d.prefixes), list(d.suffixes), list(d.infixes)

    al, au, a, q, p = cc.ALPHA_LOWER, cc.ALPHA_UPPER, cc.ALPHA, cc.CONCAT_QUOTES, cc.PUNCT
    # The expressions below are spaCy's own (spacy/lang/punctuation.py and
    # spacy/lang/en/punctuation.py); check that they are still what this port implements.
    expected_suffix_tail = [
        "'s", "'S", "’s", "’S", "—", "–",
        r"(?<=[0-9])\+",
        r"(?<=°[FfCcKk])\.",
        r"(?<=[0-9])(?:{c})".format(c=cc.CURRENCY),
        r"(?<=[0-9])(?:{u})".format(u=cc.UNITS),
        r"(?<=[0-9{al}{e}{p}(?:{q})])\.".format(al=al, e=r"%²\-\+", q=q, p=p),
        r"(?<=[{au}][{au}])\.".format(au=au),
    ]
    n_plain_suffixes = len(cc.LIST_PUNCT) + len(cc.LIST_ELLIPSES) + len(cc.LIST_QUOTES) + len(cc.LIST_ICONS)
    assert suffixes[:n_plain_suffixes] == cc.LIST_PUNCT + cc.LIST_ELLIPSES + cc.LIST_QUOTES + cc.LIST_ICONS
    assert suffixes[n_plain_suffixes:] == expected_suffix_tail, "spaCy's English suffixes changed"
    expected_infixes = cc.LIST_ELLIPSES + cc.LIST_ICONS + [
        r"(?<=[0-9])[+\-\*^](?=[0-9-])",
        r"(?<=[{al}{q}])\.(?=[{au}{q}])".format(al=al, au=au, q=q),
        r"(?<=[{a}]),(?=[{a}])".format(a=a),
        r"(?<=[{a}0-9])(?:{h})(?=[{a}])".format(a=a, h=cc.HYPHENS),
        r"(?<=[{a}0-9])[:<>=/](?=[{a}])".format(a=a),
    ]
    assert infixes == expected_infixes, "spaCy's English infixes changed"
    expected_prefixes = (
        ["§", "%", "=", "—", "–", r"\+(?![0-9])"]
        + cc.LIST_PUNCT + cc.LIST_ELLIPSES + cc.LIST_QUOTES + cc.LIST_CURRENCY + cc.LIST_ICONS
    )
    assert prefixes == expected_prefixes, "spaCy's English prefixes changed"
    assert tok.token_match is None
    assert cc.HYPHENS == "-|–|—|--|---|——|~"

    print("// @generated by runtime/data/tests/reference/filters_gen_tables.py — do not edit.")
    print(f"// spaCy {spacy.__version__}, datatrove {datatrove.__version__ if hasattr(datatrove, '__version__') else '0.10.1'}, "
          f"Python {sys.version_info.major}.{sys.version_info.minor} (Unicode {unicodedata.unidata_version}).")
    print("//! Tables of datatrove's English word tokenizer (spaCy's `en` tokenizer rules), generated")
    print("//! from the installed spaCy, datatrove and Python by")
    print("//! `tests/reference/filters_gen_tables.py`; `tests/filters.rs` checks they are current.")
    print()
    print("use super::words::CharSet;")
    print()

    emit_set("ALPHA", "spaCy's `ALPHA` (char_classes.py).", class_ranges(f"[{a}]"))
    emit_set("ALPHA_UPPER", "spaCy's `ALPHA_UPPER`.", class_ranges(f"[{au}]"))
    emit_set("ICONS", "spaCy's `LIST_ICONS` class (Unicode So symbols and emoji).", class_ranges(cc.LIST_ICONS[0]))
    emit_set(
        "SUFFIX_DOT_AFTER",
        "The lookbehind class of the suffix `(?<=[0-9{al}{e}{p}(?:{q})])\\.` (as Python reads it).",
        class_ranges(r"[0-9{al}{e}{p}(?:{q})]".format(al=al, e=r"%²\-\+", q=q, p=p)),
    )
    emit_set("INFIX_DOT_BEFORE", "The lookbehind class `[{al}{q}]` of the infix `.`.", class_ranges(f"[{al}{q}]"))
    emit_set("INFIX_DOT_AFTER", "The lookahead class `[{au}{q}]` of the infix `.`.", class_ranges(f"[{au}{q}]"))

    # Prefixes: every alternative but `\+(?![0-9])`, `\.\.+` and the three two- and
    # three-character currencies is one character; the first alternative that matches wins.
    # spaCy compiles only the entries that are not blank (util.compile_prefix_regex).
    prefix_search = tok.prefix_search
    prefix_single = ranges_of(lambda ch: ch not in "+." and (m := prefix_search(ch + "a")) is not None and m.end() == 1)
    emit_set("PREFIX_CHARS", "Characters that are a whole prefix on their own.", prefix_single)
    multi_prefix = [literal(x) for x in prefixes if x.strip() and literal(x) is not None and len(literal(x)) > 1]
    print("/// Multi-character literal prefixes, in the order spaCy tries them.")
    print("pub static PREFIX_LITERALS: &[&str] = &[" + ", ".join(rust_str(x) for x in multi_prefix) + "];")
    print()

    plain = [x for x in suffixes if x.strip() and "(?<=" not in x and x != r"\.\.+"]
    plain_rx = re.compile("(?:" + "|".join(plain) + ")")
    emit_set("SUFFIX_CHARS", "Characters that are a whole suffix on their own (no lookbehind).",
             ranges_of(lambda ch: plain_rx.fullmatch(ch) is not None))
    multi_suffix = sorted({literal(x) for x in plain if literal(x) is not None and len(literal(x)) > 1})
    print("/// Multi-character literal suffixes without lookbehind.")
    print("pub static SUFFIX_LITERALS: &[&str] = &[" + ", ".join(rust_str(x) for x in multi_suffix) + "];")
    print()
    currency = [re.sub(r"\\(.)", r"\1", x) for x in cc.LIST_CURRENCY]
    print("/// spaCy's currencies: a suffix after an ASCII digit.")
    print("pub static CURRENCIES: &[&str] = &[" + ", ".join(rust_str(x) for x in currency) + "];")
    print()
    print("/// spaCy's units: a suffix after an ASCII digit.")
    print("pub static UNITS: &[&str] = &[" + ", ".join(rust_str(x) for x in cc.LIST_UNITS) + "];")
    print()
    max_suffix = max(len(x) for x in multi_suffix + currency + cc.LIST_UNITS)
    print("/// The longest literal suffix, in characters.")
    print(f"pub const MAX_SUFFIX_CHARS: usize = {max_suffix};")
    print()

    # Python built-ins the filters call.
    emit_set("PY_SPACE", "Python's `str.isspace`.", ranges_of(str.isspace))
    emit_set("PY_ALPHA", "Python's `str.isalpha`.", ranges_of(str.isalpha))
    emit_set("RE_DIGIT", "Python `re`'s `\\d` on `str` (decimal digits).", class_ranges(r"\d"))
    emit_set("RE_WORD", "Python `re`'s `\\w` on `str` (alphanumeric or `_`).", class_ranges(r"\w"))
    emit_set("PY_LINE_BREAK", "Characters Python's `str.splitlines` breaks at.",
             ranges_of(lambda ch: len(("a" + ch + "b").splitlines()) == 2))
    emit_set("PUNCT_CATEGORY", "Unicode general category P* (spaCy's `is_punct`), as Python sees it.",
             ranges_of(lambda ch: unicodedata.category(ch).startswith("P")))
    emit_set("DATATROVE_PUNCTUATION", "datatrove's `PUNCTUATION_SET` (utils/text.py).",
             ranges_of(lambda ch: ch in PUNCTUATION_SET))
    emit_set("TERMINAL_PUNCTUATION", "datatrove's `TERMINAL_PUNCTUATION` (utils/text.py).",
             ranges_of(lambda ch: ch in TERMINAL_PUNCTUATION))
    emit_set("SENTENCE_PUNCTUATION", "spaCy's `Sentencizer.default_punct_chars`.",
             ranges_of(lambda ch: ch in set(Sentencizer.default_punct_chars)))
    assert all(len(x) == 1 for x in Sentencizer.default_punct_chars)

    # The URL expression in the `regex` crate's syntax: Python's \w and \d made explicit.
    word = regex_class_body(class_ranges(r"\w"))
    digit = regex_class_body(class_ranges(r"\d"))
    url = URL_PATTERN
    url = url.replace("[\\w\\+\\-\\.]", "[" + word + "\\+\\-\\.]")
    assert "\\w" not in url
    url = url.replace("\\d", "[" + digit + "]")
    url = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: "\\x{%s}" % m.group(1), url)
    url = re.sub(r"\\U([0-9a-fA-F]{8})", lambda m: "\\x{%X}" % int(m.group(1), 16), url)
    print("/// spaCy's `URL_PATTERN` (lang/tokenizer_exceptions.py) with Python's `\\w` and `\\d` as classes.")
    print("pub static URL_PATTERN: &str = " + rust_str(url) + ";")
    print()

    rules = tok.rules
    print("/// spaCy's English tokenizer exceptions: the string and the tokens it becomes.")
    print("pub static SPECIAL_CASES: &[(&str, &[&str])] = &[")
    for key in sorted(rules):
        orths = [t[ORTH] for t in rules[key]]
        assert "".join(orths) == key
        print("    (" + rust_str(key) + ", &[" + ", ".join(rust_str(o) for o in orths) + "]),")
    print("];")
    print()

    # The special-case matcher: with faster_heuristics, an exception joins the matcher if any
    # affix expression finds something in it or it holds a space; its pattern is the
    # exception's own tokenization without special cases (Tokenizer.add_special_case).
    plain_tok = Tokenizer(nlp.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
                          infix_finditer=tok.infix_finditer, token_match=tok.token_match, url_match=tok.url_match)
    assert tok.faster_heuristics
    print("/// The special-case matcher's patterns: an exception and its tokens without special cases.")
    print("pub static MATCHER_PATTERNS: &[(&str, &[&str])] = &[")
    for key in sorted(rules):
        if tok.find_prefix(key) or tok.find_infix(key) or tok.find_suffix(key) or " " in key:
            toks = [t.text for t in plain_tok(key)]
            print("    (" + rust_str(key) + ", &[" + ", ".join(rust_str(t) for t in toks) + "]),")
    print("];")


if __name__ == "__main__":
    main()
