"""Times datasketch near-deduplication of a JSONL corpus on one core, for kiln's benchmark.

Usage: datasketch_bench.py DOCS.jsonl --ngram N --bands B --rows R [--scheme S]

The documents are loaded first (not timed). Timed, for each document in order: datatrove's
simplify_text, whitespace words, N-word shingles (shingling.py), a MinHash with
num_perm = B*R (datasketch's update_batch), MinHashLSH(params=(B, R)).query, union with
every candidate (union-find, root = earliest document), insert. Prints one JSON object:
{"docs", "seconds", "docs_per_second", "kept_docs", "clusters"} — the same work and report
as kiln's near_dedup_texts. Run by runtime/data/benches/dedup.rs.
"""

import argparse
import json
import time

from datasketch import MinHash, MinHashLSH

from shingling import shingles


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("docs")
    p.add_argument("--ngram", type=int, required=True)
    p.add_argument("--bands", type=int, required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--scheme", default=None)
    args = p.parse_args()
    num_perm = args.bands * args.rows
    with open(args.docs, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]

    start = time.perf_counter()
    lsh = MinHashLSH(num_perm=num_perm, params=(args.bands, args.rows))
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    kwargs = {"scheme": args.scheme} if args.scheme else {}
    for i, text in enumerate(texts):
        s = shingles(text, args.ngram)
        if not s:
            continue
        m = MinHash(num_perm=num_perm, **kwargs)
        m.update_batch([x.encode("utf-8") for x in s])
        for j in lsh.query(m):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
        lsh.insert(i, m)
    roots = [find(i) for i in range(len(texts))]
    seconds = time.perf_counter() - start

    sizes: dict[int, int] = {}
    for r in roots:
        sizes[r] = sizes.get(r, 0) + 1
    print(
        json.dumps(
            {
                "docs": len(texts),
                "seconds": seconds,
                "docs_per_second": len(texts) / seconds,
                "kept_docs": sum(1 for i, r in enumerate(roots) if r == i),
                "clusters": sum(1 for s in sizes.values() if s >= 2),
            }
        )
    )


if __name__ == "__main__":
    main()
