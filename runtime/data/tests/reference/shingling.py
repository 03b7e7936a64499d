"""Shingling shared by the datasketch reference scripts: datatrove's simplify_text, split
on whitespace, n consecutive words joined by one space (datatrove's get_shingles with a
whitespace tokenizer; the same definition as kiln's normalize::shingles)."""

from datatrove.utils.text import simplify_text


def shingles(text: str, n: int) -> set[str]:
    words = simplify_text(text).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}
