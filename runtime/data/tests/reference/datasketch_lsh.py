"""datasketch's MinHash LSH decisions on a labelled set of document pairs.

Usage: datasketch_lsh.py DOCS.jsonl PAIRS.jsonl OUT.jsonl --ngram N --bands B --rows R
                         [--scheme affine32|affine64|legacy] [--seeds 1,2,...]

DOCS.jsonl: {"id": str, "text": str} per line. PAIRS.jsonl: {"a": id, "b": id} per line.
For each seed, every document with at least one shingle gets a datasketch MinHash
(num_perm = B*R, that seed, the given scheme — by default datasketch's own default) over
its shingles (shingling.py) and is inserted into a MinHashLSH(num_perm=B*R,
params=(B, R)). For each pair OUT.jsonl receives {"a", "b", "true_jaccard" (exact, on the
shingle sets), "candidate": [b in lsh.query(minhash of a), per seed],
"estimated_jaccard": [MinHash.jaccard, per seed]}.
Run by runtime/data/tests/dedup.rs with /work/main/.venv/bin/python.
"""

import argparse
import json

from datasketch import MinHash, MinHashLSH

from shingling import shingles


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("docs")
    p.add_argument("pairs")
    p.add_argument("out")
    p.add_argument("--ngram", type=int, required=True)
    p.add_argument("--bands", type=int, required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--scheme", default=None)
    p.add_argument("--seeds", default="1")
    args = p.parse_args()
    num_perm = args.bands * args.rows

    seeds = [int(x) for x in args.seeds.split(",")]
    kwargs = {"scheme": args.scheme} if args.scheme else {}

    sets: dict[str, set[str]] = {}
    encoded: dict[str, list[bytes]] = {}
    with open(args.docs, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            s = shingles(doc["text"], args.ngram)
            sets[doc["id"]] = s
            if s:
                encoded[doc["id"]] = [x.encode("utf-8") for x in s]
    with open(args.pairs, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]

    candidate = [[] for _ in pairs]
    estimated = [[] for _ in pairs]
    for seed in seeds:
        hashes: dict[str, MinHash] = {}
        lsh = MinHashLSH(num_perm=num_perm, params=(args.bands, args.rows))
        for key, batch in encoded.items():
            m = MinHash(num_perm=num_perm, seed=seed, **kwargs)
            m.update_batch(batch)
            hashes[key] = m
            lsh.insert(key, m)
        queried: dict[str, set] = {}
        for i, pair in enumerate(pairs):
            a, b = pair["a"], pair["b"]
            if a in hashes and b in hashes:
                if a not in queried:
                    queried[a] = set(lsh.query(hashes[a]))
                candidate[i].append(b in queried[a])
                estimated[i].append(hashes[a].jaccard(hashes[b]))
            else:
                candidate[i].append(False)
                estimated[i].append(0.0)

    with open(args.out, "w", encoding="utf-8") as out:
        for i, pair in enumerate(pairs):
            a, b = pair["a"], pair["b"]
            union = len(sets[a] | sets[b])
            true_j = len(sets[a] & sets[b]) / union if union else 0.0
            record = {
                "a": a,
                "b": b,
                "true_jaccard": true_j,
                "candidate": candidate[i],
                "estimated_jaccard": estimated[i],
            }
            out.write(json.dumps(record) + "\n")

if __name__ == "__main__":
    main()
