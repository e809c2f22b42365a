"""Dataset throughput: finetune-hub's validate + count + convert against the OpenAI cookbook's approach.

    python benchmarks/data_throughput.py                 # 1 GB file (default)
    python benchmarks/data_throughput.py --size-mb 300   # smaller
    TIKTOKEN_CACHE_DIR=~/tiktoken python benchmarks/data_throughput.py --size-mb 300
    python benchmarks/data_throughput.py --repeat 3     # each approach 3 times, alternating; medians

It writes a chat JSONL of English-like text (fixed system prompt, 1-3 turns, ~1.2 KB per example), then runs, each
in its own process on the same file:
  - cookbook: a faithful re-implementation of examples/Chat_finetuning_data_prep.ipynb (load every line into a
    list, the seven format checks, the warnings, tiktoken counts per message value, distributions, epochs and
    billed tokens). It does no conversion.
  - ours: `finetune_hub.data.convert(..., to="local")` (OpenAI chat JSONL) — the full validator, exact token
    counts, duplicate detection, and the converted file written (validate + count + convert in one pass).
  - ours~: the same with approximate token counts, what an offline machine without tiktoken's files does.
Both count with the same tiktoken encoding: cl100k_base (the cookbook's) when tiktoken can load it; otherwise
a BPE trained here on the generated text and saved as a .tiktoken file, used by both (stated in the output).
Reported: MB/s, wall seconds, peak RSS of the main process, and peak total PSS of the process tree (sampled
every 100 ms; PSS splits shared pages fairly between processes, so worker processes are not double-counted).
Dirty pages are flushed (os.sync) before each run, so no run pays for the writes of the one before.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WORD_LIST = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she which do "
    "their time if will way about many then them write would like so these her long make thing see him two has "
    "look more day could go come did number sound no most people my over know water than call first who may "
    "down side been now find any new work part take get place made live where after back little only round man "
    "year came show every good me give our under name very through just form sentence great think say help low "
    "line differ turn cause much mean before move right boy old too same tell does set three want air well also "
    "play small end put home read hand port large spell add even land here must big high such follow act why ask "
    "men change went light kind off need house picture try us again animal point mother world near build self "
    "earth father head stand own page should country found answer school grow study still learn plant cover food "
    "sun four between state keep eye never last let thought city tree cross farm hard start might story saw far "
    "sea draw left late run don't while press close night real life few north open seem together next white "
    "children begin got walk example ease paper group always music those both mark often letter until mile river "
    "car feet care second book carry took science eat room friend began idea fish mountain stop once base hear "
    "horse cut sure watch color face wood main enough plain girl usual young ready above ever red list though "
    "feel talk bird soon body dog family direct pose leave song measure door product black short numeral class "
    "wind question happen complete ship area half rock order fire south problem piece told knew pass since top "
    "whole king space heard best hour better true during hundred five remember step early hold west ground "
    "interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay "
    "against pattern slow center love person money serve appear road map rain rule govern pull cold notice voice "
    "unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest "
    "correct able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean "
    "warm free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay "
    "wheel full force blue object decide surface deep moon island foot system busy test record boat common gold "
    "possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow "
    "tire bring yes distant fill east paint language among"
)
WORDS = _WORD_LIST.split()
SYSTEM = "You are a helpful assistant for a hardware store. Answer clearly, briefly and politely."


def sentence(rng: random.Random, weights: list[float]) -> str:
    words = rng.choices(WORDS, weights, k=rng.randint(5, 22))
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 2000)))
    if len(words) > 8 and rng.random() < 0.4:
        words[rng.randrange(3, len(words) - 2)] += ","
    return " ".join(words).capitalize() + rng.choice(".....?!")


def generate(path: Path, size_mb: int, seed: int = 0) -> int:
    """Examples assembled from a pool of 50,000 generated sentences (generating each word would take minutes
    per GB); the pool's vocabulary and lengths follow natural text closely enough for tokenizer speed."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf, like natural text
    pool = [sentence(rng, weights) for _ in range(50_000)]

    def text(sentences: int) -> str:
        return " ".join(rng.choices(pool, k=sentences))

    target, written, n = size_mb << 20, 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            messages = [{"role": "system", "content": SYSTEM}]
            for _ in range(rng.choice((1, 1, 2, 3))):
                messages.append({"role": "user", "content": text(rng.randint(1, 4))})
                messages.append({"role": "assistant", "content": text(rng.randint(2, 12))})
            line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line)
            n += 1
    return n


# ---------------------------------------------------------------------------------------------- tokenizer


def synthetic_tiktoken(sample: Path, out: Path, vocab: int = 50_000) -> Path:
    """A byte-level BPE trained on the generated text, saved in tiktoken's file format."""
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    texts = []
    with open(sample, encoding="utf-8") as fh:
        for _, line in zip(range(20_000), fh, strict=False):
            texts += [m["content"] for m in json.loads(line)["messages"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    visible = [*range(33, 127), *range(161, 173), *range(174, 256)]  # GPT-2's byte → printable character map
    byte_of = {chr(b): b for b in visible}
    byte_of.update({chr(256 + i): b for i, b in enumerate(b for b in range(256) if b not in visible)})
    with open(out, "w") as fh:
        for rank, (token, _) in enumerate(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])):
            fh.write(f"{base64.b64encode(bytes(byte_of[c] for c in token)).decode()} {rank}\n")
    return out


def cookbook_encoding(tiktoken_file: str | None):  # type: ignore[no-untyped-def]
    import tiktoken

    if tiktoken_file is None:
        return tiktoken.get_encoding("cl100k_base")
    from tiktoken.load import load_tiktoken_bpe

    from finetune_hub.data.tokens import CL100K_PATTERN

    ranks = load_tiktoken_bpe(tiktoken_file)
    return tiktoken.Encoding("cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={})


# ---------------------------------------------------------------------------------------------- the runs


def run_cookbook(data_path: str, tiktoken_file: str | None) -> dict[str, object]:
    """The notebook's cells, in order, with its constants; prints replaced by a returned summary."""
    from collections import defaultdict

    import numpy as np

    with open(data_path, encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]

    format_errors: defaultdict[str, int] = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1

    encoding = cookbook_encoding(tiktoken_file)

    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):  # type: ignore[no-untyped-def]
        num_tokens = 0
        for message in messages:
            num_tokens += tokens_per_message
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += tokens_per_name
        num_tokens += 3
        return num_tokens

    def num_assistant_tokens_from_messages(messages):  # type: ignore[no-untyped-def]
        num_tokens = 0
        for message in messages:
            if message["role"] == "assistant":
                num_tokens += len(encoding.encode(message["content"]))
        return num_tokens

    def distribution(values):  # type: ignore[no-untyped-def]
        return (
            min(values),
            max(values),
            np.mean(values),
            np.median(values),
            np.quantile(values, 0.1),
            np.quantile(values, 0.9),
        )

    n_missing_system = n_missing_user = 0
    n_messages, convo_lens, assistant_message_lens = [], [], []
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_message_lens.append(num_assistant_tokens_from_messages(messages))
    distribution(n_messages), distribution(convo_lens), distribution(assistant_message_lens)
    n_too_long = sum(length > 4096 for length in convo_lens)

    MAX_TOKENS_PER_EXAMPLE, TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 4096, 3, 100, 25000
    MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
    n_epochs = TARGET_EPOCHS
    n_train_examples = len(dataset)
    if n_train_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_train_examples)
    elif n_train_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_train_examples)
    n_billing_tokens_in_dataset = sum(min(MAX_TOKENS_PER_EXAMPLE, length) for length in convo_lens)
    return {
        "examples": len(dataset),
        "errors": sum(format_errors.values()),
        "tokens": sum(convo_lens),
        "too_long": n_too_long,
        "billed": n_epochs * n_billing_tokens_in_dataset,
    }


def run_ours(
    data_path: str, tiktoken_file: str | None, out: str, workers: int | None, approximate: bool
) -> dict[str, object]:
    from finetune_hub.data import convert
    from finetune_hub.data.billing import billed_tokens
    from finetune_hub.data.dataset_stats import DatasetStats

    model: str | None = tiktoken_file or "gpt-4-0613"  # a cl100k_base model, the cookbook's encoding
    if approximate:  # what an offline machine without tiktoken's files does by default
        os.environ["FTH_OFFLINE"] = "1"
        os.environ["TIKTOKEN_CACHE_DIR"] = tempfile.mkdtemp()
        model = None
    # "local" reads the same OpenAI chat JSONL; "openai" would refuse a file over its 512 MB upload limit
    report = convert(Path(data_path), to="local", out=Path(out), model=model, workers=workers)
    stats = DatasetStats(report.examples, report.tokens, 0, True, report.counter)
    billed = billed_tokens(stats, "openai", model="gpt-4o-mini")
    return {"examples": report.examples, "tokens": report.tokens, "counter": report.counter, "billed": billed.billed}


def measure(argv: list[str]) -> dict[str, object]:
    """Run one approach in a child process; wall time and memory of its whole process tree."""
    import psutil

    os.sync()  # the previous step's writes reach the disk now, not in the background during this run
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak_pss = peak_rss_main = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            pss = 0
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # gone between the two calls
                    pss += p.memory_full_info().pss
            peak_pss = max(peak_pss, pss)
            peak_rss_main = max(peak_rss_main, parent.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.1)  # each sample costs ~2 ms of CPU, which the runs measured need
    wall = time.perf_counter() - start
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"{argv[1]} run failed with exit code {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    return {**result, "wall_s": wall, "peak_rss_main_mb": peak_rss_main / 2**20, "peak_pss_tree_mb": peak_pss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated file (default 1024)")
    parser.add_argument("--dir", help="where to write the files (default: a temporary folder)")
    parser.add_argument("--workers", type=int, help="finetune-hub worker processes (default: one per CPU)")
    parser.add_argument("--skip-cookbook", action="store_true", help="only run finetune-hub")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each approach, alternating; medians shown")
    parser.add_argument("--run", choices=["ours", "cookbook"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--tiktoken-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--approximate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "cookbook":
        print(json.dumps(run_cookbook(args.file, args.tiktoken_file)))
        return
    if args.run == "ours":
        print(json.dumps(run_ours(args.file, args.tiktoken_file, args.out, args.workers, args.approximate)))
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data = Path(tmp) / "chat.jsonl"
        t0 = time.perf_counter()
        n = generate(data, args.size_mb)
        size_mb = data.stat().st_size / 2**20
        print(f"generated {size_mb:,.0f} MB, {n:,} examples in {time.perf_counter() - t0:.0f} s", flush=True)
        tiktoken_file = None
        try:
            import tiktoken

            tiktoken.get_encoding("cl100k_base")
            print("tokenizer: tiktoken cl100k_base (the cookbook's), for both")
        except Exception:  # offline without a cache: a local BPE in tiktoken's format, for both
            tiktoken_file = str(synthetic_tiktoken(data, Path(tmp) / "cl100k_synthetic.tiktoken"))
            print("tokenizer: cl100k_base not loadable offline; a 50k BPE trained on the data, for both")
        common = ["--file", str(data)] + (["--tiktoken-file", tiktoken_file] if tiktoken_file else [])
        workers = ["--workers", str(args.workers)] if args.workers else []
        ours = ["--run", "ours", *common, "--out", str(Path(tmp) / "out.jsonl"), *workers]
        approaches = {"ours": ours, "ours~": [*ours, "--approximate"]}
        if not args.skip_cookbook:
            approaches["cookbook"] = ["--run", "cookbook", *common]
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in approaches}
        for _ in range(args.repeat):  # round-robin, so a slow spell of the machine hits every approach
            for name, argv in approaches.items():
                runs[name].append(measure(argv))
        rows = {name: sorted(found, key=lambda row: row["wall_s"])[len(found) // 2] for name, found in runs.items()}
        cpus = len(os.sched_getaffinity(0))
        median = f", median of {args.repeat} runs" if args.repeat > 1 else ""
        print(f"\n{size_mb:,.0f} MB, {n:,} examples, {cpus} CPUs{median}")
        print("ours = exact counts with the cookbook's tokenizer; ours~ = approximate counts (offline default)")
        print(f"{'approach':<10} {'MB/s':>8} {'wall s':>8} {'RSS main MB':>12} {'PSS tree MB':>12}  tokens")
        for name, row in rows.items():
            spread = "  (" + ", ".join(f"{size_mb / r['wall_s']:.1f}" for r in runs[name]) + " MB/s)"
            print(
                f"{name:<10} {size_mb / row['wall_s']:>8.1f} {row['wall_s']:>8.1f} {row['peak_rss_main_mb']:>12.0f} "
                f"{row['peak_pss_tree_mb']:>12.0f}  {row['tokens']:,}{spread * (args.repeat > 1)}"
            )
        if "cookbook" in rows:
            for name in ("ours", "ours~"):
                rounds = [c["wall_s"] / o["wall_s"] for c, o in zip(runs["cookbook"], runs[name], strict=True)]
                each = f" (per round: {', '.join(f'{r:.1f}' for r in rounds)})" if args.repeat > 1 else ""
                print(f"speed-up {name}: {rows['cookbook']['wall_s'] / rows[name]['wall_s']:.1f}x{each}")


if __name__ == "__main__":
    main()
