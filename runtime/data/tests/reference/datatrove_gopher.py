"""datatrove's reference decisions for kiln's quality filters (tests/filters.rs,
benches/filters.rs).

Reads JSONL documents ({"id", "text"}) from the file given as the first argument and writes
one JSON line per document to stdout:

- default: {"id", "words", "gopher_repetition", "gopher_quality", "c4", "c4_text",
  "fineweb"}: datatrove's split_into_words(text, "eng"), and each family run on its own on
  the original text (datatrove 0.10.1's GopherRepetitionFilter, GopherQualityFilter,
  C4QualityFilter, FineWebQualityFilter with their default arguments): null if kept, else
  datatrove's reason; c4_text is the text C4 keeps (null if dropped);
- `--bench`: no per-document output; times GopherRepetitionFilter then GopherQualityFilter
  (the Gopher stack, first failure wins, as in a pipeline) over all documents, after one
  untimed warm-up pass over the first 50, and prints {"documents", "seconds",
  "documents_per_second"}.
"""

import json
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import get_filter_result
from datatrove.pipeline.filters.c4_filters import C4QualityFilter
from datatrove.pipeline.filters.fineweb_quality_filter import FineWebQualityFilter
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import split_into_words


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def reason(filt, doc):
    keep, why = get_filter_result(filt.filter(doc))
    return None if keep else (why or "dropped")


def main():
    args = sys.argv[1:]
    mode = "decisions"
    if args and args[0] == "--bench":
        mode = args.pop(0)[2:]
    docs = read(args[0])
    out = sys.stdout
    rep, qual = GopherRepetitionFilter(), GopherQualityFilter()
    if mode == "bench":
        def run(batch):
            kept = 0
            for d in batch:
                doc = Document(text=d["text"], id=d["id"])
                if reason(rep, doc) is None and reason(qual, doc) is None:
                    kept += 1
            return kept

        run(docs[:50])
        start = time.perf_counter()
        run(docs)
        seconds = time.perf_counter() - start
        out.write(json.dumps({"documents": len(docs), "seconds": seconds,
                              "documents_per_second": len(docs) / seconds}) + "\n")
        return
    c4, fw = C4QualityFilter(), FineWebQualityFilter()
    for d in docs:
        row = {"id": d["id"], "words": split_into_words(d["text"])}
        row["gopher_repetition"] = reason(rep, Document(text=d["text"], id=d["id"]))
        row["gopher_quality"] = reason(qual, Document(text=d["text"], id=d["id"]))
        doc = Document(text=d["text"], id=d["id"])
        row["c4"] = reason(c4, doc)
        row["c4_text"] = doc.text if row["c4"] is None else None
        row["fineweb"] = reason(fw, Document(text=d["text"], id=d["id"]))
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
