"""datatrove's simplify_text on a JSON list of strings, for kiln's normalisation test.

Usage: simplify_text.py IN.json OUT.json
IN.json is a JSON array of strings; OUT.json receives the array of
datatrove.utils.text.simplify_text(s) (default TextNormConfig), in order.
Run by runtime/data/tests/dedup.rs with /work/main/.venv/bin/python.
"""

import json
import sys

from datatrove.utils.text import simplify_text


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        texts = json.load(f)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump([simplify_text(t) for t in texts], f, ensure_ascii=False)


if __name__ == "__main__":
    main()
