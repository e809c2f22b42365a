"""Where a scan's CPU time per example goes: each stage of finetune_hub.data's per-example work, timed alone.

    TIKTOKEN_CACHE_DIR=~/tiktoken python benchmarks/scan_stages.py              # 60,000 generated examples
    python benchmarks/scan_stages.py --file data.jsonl --examples 20000         # your own OpenAI chat JSONL

One process, the collector off (as in a scan), best of three rounds per stage. "counter floor" is a bare
`text.split(" ")` + word-memo lookup over the same texts: the least any Python word counter can cost.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from data_throughput import generate

from finetune_hub.data import rules
from finetune_hub.data.formats import classify
from finetune_hub.data.importers import importer_for, kind_of
from finetune_hub.data.scan import fingerprint
from finetune_hub.data.sources import decode_json_line
from finetune_hub.data.tokens import counter_for


def best_us(stage: Callable[[Any], object], items: list[Any], per: int, rounds: int = 3) -> float:
    """Best of `rounds` passes of `stage` over `items`, in µs per example (`per` examples in all)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            stage(item)
        times.append(time.perf_counter() - start)
    return min(times) * 1e6 / per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, help="OpenAI chat JSONL (default: generated like data_throughput.py)")
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--model", default="gpt-4-0613", help="counts as this model's tokenizer (default cl100k)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "chat.jsonl"
            generate(path, size_mb=max(1, args.examples * 1300 >> 20))
        with open(path, "rb") as fh:
            raws = list(itertools.islice(fh, args.examples))
    n = len(raws)
    counter = counter_for(args.model)
    importer = importer_for("openai_chat")
    records = [decode_json_line(raw) for raw in raws]
    canonical = [importer(record)[0] for record in records]
    texts = [m["content"] for c in canonical for m in c["messages"] if isinstance(m.get("content"), str)]
    words = sum(t.count(" ") + 1 for t in texts)
    print(f"{n:,} examples, {len(texts) / n:.1f} messages and {words / n:.0f} words each; counter: {counter.name}")
    memo = dict.fromkeys((word for text in texts for word in text.split(" ")), 1)  # every word known, as when warm
    roles: Counter[str] = Counter()
    stages: list[tuple[str, Callable[[Any], object], list[Any]]] = [
        ("parse", decode_json_line, raws),
        ("classify", classify, records),
        ("import", importer, records),
        ("kind", kind_of, canonical),
        ("rules", lambda c: rules.check(c, "chat"), canonical),
        ("counter", lambda c: counter.example(c, "chat"), canonical),
        ("fingerprint", lambda c: fingerprint(c, "chat", roles), canonical),
    ]
    gc.disable()
    total = 0.0
    for name, stage, items in stages:
        us = best_us(stage, items, n)
        total += us
        print(f"{name:14} {us:6.2f} µs per example")
    print(f"{'sum':14} {total:6.2f} µs per example (the scan adds reading lines and bookkeeping)")
    floor = best_us(lambda t: sum(map(memo.__getitem__, t.split(" "))), texts, n)
    print(f"{'counter floor':14} {floor:6.2f} µs per example (split and look up each word: the Python floor)")


if __name__ == "__main__":
    main()
