"""Writes the quickstart's support-ticket routing data: train.jsonl, valid.jsonl and test.jsonl (seeded).

Each example is a customer message; the assistant answers with the team that should handle it. The test
split combines the same vocabulary into messages that appear in neither train nor valid.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Route the message: billing, shipping, account or technical."
TOPICS = {
    "billing": ["I was charged twice", "my invoice is wrong", "please refund my payment",
                "the price on my bill is too high", "my card was declined", "I need a receipt for my order"],
    "shipping": ["my parcel has not arrived", "the package came damaged", "can I change the delivery address",
                 "the tracking number does not work", "my order is late", "the courier lost my box"],
    "account": ["I cannot log in", "please reset my password", "how do I change my email", "delete my profile",
                "my username is taken", "I want to close my account"],
    "technical": ["the app crashes on start", "the website shows an error", "the update failed to install",
                  "the screen stays black", "sync is not working", "the button does nothing"],
}  # fmt: skip
OPENERS = ["Hello,", "Hi team,", "Good morning,", "Hey,", "Dear support,", ""]
CLOSERS = ["Thanks.", "Please help.", "What can I do?", "This is urgent.", "", "Kind regards."]


def example(rng: random.Random) -> dict:
    team = rng.choice(sorted(TOPICS))
    text = " ".join(p for p in (rng.choice(OPENERS), rng.choice(TOPICS[team]) + ".", rng.choice(CLOSERS)) if p)
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                         {"role": "assistant", "content": team}]}  # fmt: skip


def main() -> None:
    rng = random.Random(7)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    sizes = {"train": 320, "valid": 40, "test": 40}
    for name, size in sizes.items():
        while len(splits[name]) < size:
            row = example(rng)
            key = row["messages"][1]["content"]
            if key not in seen:  # every message appears in one split only
                seen.add(key)
                splits[name].append(row)
    here = Path(__file__).parent
    for name, rows in splits.items():
        (here / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
