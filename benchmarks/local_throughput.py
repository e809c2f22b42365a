"""Local LoRA throughput: plain transformers.Trainer + PEFT (padded) vs finetune-hub's trainer, one process.

    python benchmarks/local_throughput.py            # Llama-3.2-1B shape on a CUDA GPU (~3-5 minutes)
    python benchmarks/local_throughput.py --smoke    # tiny model on the CPU, seconds (checks the script)
    python benchmarks/local_throughput.py --skip-baseline --profile DIR   # where our step's time goes
    python benchmarks/local_throughput.py --skip-baseline --log-every 5 --warmup-ours 10   # a log line per 5 steps

Both variants train the same random-initialised model (LoRA r16, alpha 32, dropout 0, all linear layers)
on the same synthetic chat mix (docs/local.md, local-training.md §7.2: mean ~1064 tokens, ~61% supervised),
bf16 autocast, fused AdamW, constant LR, no gradient checkpointing. Reported per variant: real (non-pad)
tokens/s over the timed steps, MFU with the LoRA FLOP count (4·N_mm + 6·N_lora + 12·L·d_attn·ctx per
token; 989 TFLOP/s dense bf16 for H100/H200, and the GEMM ceiling measured here), and peak memory.
Needs only torch + transformers + peft; prints a compact table last and writes --json. With --profile, three
timed steps of ours run under torch.profiler: DIR gets the top operators by device (or CPU) time, the device
time per step by kernel class with the busiest kernels (also printed), and a Chrome trace, per tokens-per-step
budget. --no-fused-lora runs ours with PEFT's own LoRA forward, to measure what local_backend/lora_fused.py buys.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_backend import attention
from local_backend.config import TrainConfig
from local_backend.data import IGNORE, Example, collate
from local_backend.loop import TokenLoss, Trainer
from local_backend.model import Precision, apply_lora
from local_backend.runfiles import RunFiles

PEAK_BF16 = 989e12  # dense bf16 datasheet peak of H100 SXM and H200 (what TRL and TorchTitan use)
GiB = 1024**3


@dataclass(frozen=True)
class Shape:
    name: str
    config: dict[str, Any]
    id_low: int  # token ids are drawn from [id_low, vocab)
    scale: float  # length scale of the chat mix (1.0 = the notes' mix)
    cap: int  # longest sample


LLAMA_1B = Shape(
    "Llama-3.2-1B",
    {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rope_theta": 500000.0,
     "tie_word_embeddings": True, "max_position_embeddings": 131072},
    id_low=1000, scale=1.0, cap=4096,
)  # fmt: skip
TINY = Shape(
    "tiny-llama (smoke)",
    {"vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True,
     "max_position_embeddings": 1024},
    id_low=16, scale=0.125, cap=512,
)  # fmt: skip


# -- data --------------------------------------------------------------------------------------------------


def synthetic_chat(n: int, shape: Shape, seed: int = 0) -> list[Example]:
    """<bos> [system 0-64] (<user> user <eot> <asst> assistant <eot>) x 1-3; user ~ lognormal(median 120,
    sigma 0.9), assistant ~ lognormal(median 220, sigma 0.9); labels = assistant tokens + their <eot>."""
    g = torch.Generator().manual_seed(seed)
    bos, user_hdr, asst_hdr, eot = 1, 2, 3, 4
    vocab = shape.config["vocab_size"]

    def ids(k: int) -> list[int]:
        return torch.randint(shape.id_low, vocab, (k,), generator=g).tolist()

    def lognormal(median: float) -> int:
        return max(1, int(median * shape.scale * math.exp(0.9 * float(torch.randn((), generator=g)))))

    out = []
    for _ in range(n):
        tokens, labels = [bos], [IGNORE]
        system = ids(int(torch.randint(0, int(64 * shape.scale) + 1, (), generator=g)))
        tokens += system
        labels += [IGNORE] * len(system)
        for _turn in range(int(torch.randint(1, 4, (), generator=g))):
            user, reply = ids(lognormal(120)), ids(lognormal(220))
            tokens += [user_hdr, *user, eot, asst_hdr, *reply, eot]
            labels += [IGNORE] * (len(user) + 3) + [*reply, eot]
        out.append(Example(tuple(tokens[: shape.cap]), tuple(labels[: shape.cap])))
    return out


def mean_context(examples: list[Example]) -> float:
    """Mean attended keys per token under per-document causal attention: E[len^2] / (2 E[len])."""
    return sum(len(e) ** 2 for e in examples) / (2 * sum(len(e) for e in examples))


# -- model and FLOPs ---------------------------------------------------------------------------------------


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype, attn: str) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(**shape.config, use_cache=False)
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model


def lora_config(target_modules: str = "all-linear") -> TrainConfig:
    return TrainConfig(model="in-memory", train_file="-", output_dir="-", lora_rank=16, lora_alpha=32,
                       lora_dropout=0.0, target_modules=target_modules)  # fmt: skip


def flops_per_token(peft_model: Any, ctx: float) -> tuple[float, dict[str, float]]:
    """4·N_mm + 6·N_lora + 12·L·(heads·head_dim)·ctx (local-training.md §4)."""
    base = peft_model.get_base_model()
    cfg = base.config
    n_mm = n_lora = 0
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear):
            if "lora_" in name:
                n_lora += module.weight.numel()
            else:
                n_mm += module.weight.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attn = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * ctx
    total = 4 * n_mm + 6 * n_lora + attn
    return total, {"N_mm": n_mm, "N_lora": n_lora, "attention_per_token": attn, "ctx": ctx}


def gemm_ceiling(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    del a, b
    return 2 * 8192**3 * 10 / (time.perf_counter() - start)


# -- measurement helpers -------------------------------------------------------------------------------------


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- B0: plain transformers.Trainer + PEFT, padded ------------------------------------------------------------


def run_baseline(
    shape: Shape, examples: list[Example], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.tokens: list[int] = []
            self._t0 = 0.0
            self._seen = 0

        def on_step_begin(self, args_: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(device)
            self._t0, self._seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args_: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(device)
            self.times.append(time.perf_counter() - self._t0)
            self.tokens.append(state.num_input_tokens_seen - self._seen)

    def pad(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    bf16 = device.type == "cuda"
    model = build_model(shape, device, torch.bfloat16 if bf16 else torch.float32, "sdpa")
    peft_model = apply_lora(model, lora_config())
    dataset = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]
    timer = Timer()
    steps = args.warmup + args.steps
    training = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="fth-bench-"), per_device_train_batch_size=args.baseline_batch,
        max_steps=steps, learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0, bf16=bf16,
        logging_steps=steps, save_strategy="no", report_to=[], remove_unused_columns=False,
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding", use_cpu=not bf16, seed=0,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=peft_model, args=training, train_dataset=dataset, data_collator=pad, callbacks=[timer])
    # A first pass over the same batches, untimed: each new padded shape pays one-time costs (kernel JIT and
    # caches) that a warm-up of a few steps does not cover. On an H200 with those caches emptied, the timed
    # steps of a single pass ran at 9,857 tokens/s; with them filled, at 14,200-14,600 (2026-11-28).
    trainer.train()
    timer.times.clear()
    timer.tokens.clear()
    reset_memory(device)
    trainer.train()  # the same batches again (the sampler's seed), now timed; the scheduler is made anew, the
    # optimizer goes on (its state already allocated, the learning rate constant): the speed is the same
    timed_t, timed_tok = timer.times[args.warmup :], timer.tokens[args.warmup :]
    result = {
        "variant": f"plain Trainer + PEFT, padded bs{args.baseline_batch}, sdpa, full-vocab loss",
        "tokens_per_s": sum(timed_tok) / sum(timed_t),
        "median_step_s": statistics.median(timed_t),
        "tokens_per_step": sum(timed_tok) / len(timed_tok),
        "peak_gib": peak_memory(device),
    }
    del trainer, peft_model, model
    reset_memory(device)
    return result


# -- ours --------------------------------------------------------------------------------------------------


def run_ours(
    shape: Shape,
    examples: list[Example],
    args: argparse.Namespace,
    device: torch.device,
    tokens_per_step: int,
    fa4: bool = False,
) -> dict[str, Any]:
    gpu = device.type == "cuda"
    precision = Precision(torch.bfloat16, torch.bfloat16) if gpu else Precision(torch.float32, None)
    attn = attention.register(fa4=fa4) if gpu and attention.kernel_available() else "sdpa"
    cfg = TrainConfig(
        model="in-memory", train_file="-", output_dir=tempfile.mkdtemp(prefix="fth-bench-"), epochs=1,
        max_steps=args.warmup_ours + args.steps, learning_rate=1e-4, lr_scheduler="constant", warmup_ratio=0.0,
        batch_size=10**6, tokens_per_batch=tokens_per_step, max_seq_length=shape.cap, packing=True,
        lora_rank=16, lora_alpha=32, lora_dropout=0.0, compile="auto" if not args.no_compile else False,
        fused_lora="auto" if not args.no_fused_lora else False,
        attention=attn, seed=0, save_steps=None, resume="never", logging_steps=args.log_every,
        loss_chunk_size=args.loss_chunk_size,
    )  # fmt: skip
    model = build_model(shape, device, precision.param_dtype, attn)
    peft_model = apply_lora(model, cfg)
    profiler = step_profiler(args, device, tokens_per_step, "_fa4" if fa4 else "")
    trainer = Trainer(cfg, peft_model, None, examples, [], RunFiles(cfg.output_dir), device, precision,
                      reporters=profiler)  # fmt: skip
    reset_memory(device)
    began = time.perf_counter()
    outcome = trainer.run_loop()
    wall = time.perf_counter() - began
    if profiler is not None:
        profiler.close()
    timed = [h for h in outcome["history"] if h["step"] > args.warmup_ours]  # a log line covers log_every steps
    seconds = [h["seconds"] for h in timed]
    tokens = [h["tokens"] for h in timed]
    result = {
        "variant": f"finetune-hub: packed {tokens_per_step} tok/step, {attn}, chunked CE, "
        f"{'compiled' if trainer.compiled else 'eager'}, fused LoRA x{trainer.fused_lora_layers}",
        "tokens_per_s": sum(tokens) / sum(seconds),
        "median_step_s": statistics.median(seconds) / args.log_every,
        "tokens_per_step": sum(tokens) / len(tokens) / args.log_every,
        "peak_gib": peak_memory(device),
        "warmup_s": wall - sum(seconds),
        "losses": [round(h["loss"], 4) for h in outcome["history"]],
        "budget": tokens_per_step,
    }
    del trainer, peft_model, model
    reset_memory(device)
    return result


class StepProfiler:
    """torch.profiler over three optimizer steps after the warm-up, stepped by the trainer's per-step report."""

    steps = 3

    def __init__(self, out: Path, device: torch.device, warmup: int, name: str) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule

        self.out, self.name, self.sort = out, name, "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        timing = schedule(wait=max(warmup - 1, 0), warmup=1, active=self.steps, repeat=1)
        # acc_events: key_averages() at the end still holds the one recorded cycle, whatever steps follow it
        self.profile = profile(activities=activities, schedule=timing, acc_events=True)
        self.profile.start()

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.profile.step()

    def close(self) -> None:
        self.profile.stop()
        self.out.mkdir(parents=True, exist_ok=True)
        table = self.profile.key_averages().table(sort_by=self.sort, row_limit=40)
        (self.out / f"profile_{self.name}.txt").write_text(table)
        trace = self.out / f"trace_{self.name}.json"
        self.profile.export_chrome_trace(str(trace))
        summary = kernel_summary(trace, steps=self.steps)
        (self.out / f"kernels_{self.name}.txt").write_text(summary)
        print(summary, flush=True)
        print(f"profile: {self.out / f'profile_{self.name}.txt'} (top operators), {trace.name}", flush=True)


KERNEL_CLASSES = (  # first match wins: attention first, since FlashAttention's template names mention cutlass
    ("attention", ("flash", "fmha", "attention")),
    ("gemm", ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas", "splitk")),
    ("compiled (triton)", ("triton",)),
    ("optimizer", ("adam", "multi_tensor")),
    ("copy/fill", ("copy", "fill", "memset", "memcpy", "cat", "index", "scatter", "gather")),
)


def kernel_summary(trace: Path, steps: int) -> str:
    """Device time per step by kernel class and the busiest kernels, from a profiler Chrome trace: how much of
    the step the GPU computes at all, and on what."""
    events = [e for e in json.loads(trace.read_text()).get("traceEvents", [])
              if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]  # fmt: skip
    if not events:
        return "no device kernels in the trace"
    span = max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)
    busy = sum(e["dur"] for e in events)
    by_class: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    for e in events:
        name = e["name"].lower()
        cls = next((c for c, keys in KERNEL_CLASSES if any(k in name for k in keys)), "other")
        by_class[cls] = by_class.get(cls, 0.0) + e["dur"]
        by_name.setdefault(e["name"][:110], []).append(e["dur"])
    lines = [f"device span {span / steps / 1e3:.1f} ms/step, kernels busy {busy / steps / 1e3:.1f} ms/step "
             f"({busy / span:.0%}), {len(events) / steps:.0f} kernels/step"]  # fmt: skip
    lines += [f"  {c:18} {t / steps / 1e3:8.2f} ms/step" for c, t in sorted(by_class.items(), key=lambda x: -x[1])]
    lines.append("top kernels (ms/step, calls/step, mean us):")
    top = sorted(by_name.items(), key=lambda x: -sum(x[1]))[:45]
    lines += [f"  {sum(d) / steps / 1e3:7.2f} {len(d) / steps:6.0f} {sum(d) / len(d):8.1f}  {n}" for n, d in top]
    return "\n".join(lines)


def step_profiler(
    args: argparse.Namespace, device: torch.device, tokens_per_step: int, tag: str = ""
) -> StepProfiler | None:
    if args.profile is None:
        return None
    return StepProfiler(args.profile, device, args.warmup_ours, f"ours_{tokens_per_step}{tag}")


def loss_agreement(shape: Shape, examples: list[Example], device: torch.device) -> dict[str, float]:
    """Same 8 samples, same weights: transformers' padded full-logit loss vs ours on one packed row."""
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    attn = attention.register() if gpu and attention.kernel_available() else "sdpa"
    peft_model = apply_lora(build_model(shape, device, dtype, attn), lora_config())
    sample = examples[:8]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
        packed = {
            k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(sample, packed=True, pad_id=0).items()
        }
        ours = float(TokenLoss(peft_model, 4096)(packed)) / len(packed["targets"])
        peft_model.get_base_model().set_attn_implementation("sdpa")
        padded = collate(sample, packed=False, pad_id=0)
        labels = torch.full_like(padded["input_ids"], IGNORE)
        for i, e in enumerate(sample):
            labels[i, : len(e)] = torch.tensor(e.labels)
        inputs = {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"], "labels": labels}
        hf = float(peft_model(**{k: v.to(device) for k, v in inputs.items()}).loss)
    del peft_model
    reset_memory(device)
    return {"ours": ours, "transformers": hf, "relative_diff": abs(ours - hf) / abs(hf)}


def fa4_rows(
    shape: Shape,
    examples: list[Example],
    args: argparse.Namespace,
    device: torch.device,
    budgets: list[int],
    done: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Ours again with FA4 routed in, per budget, after a kernel check on a packed row of the first budget."""
    from benchmarks import fa4

    lengths, total = [], 0
    for e in examples:
        if total + len(e) > budgets[0]:
            break
        lengths.append(len(e))
        total += len(e)
    cfg = shape.config
    ok, report = fa4.kernel_check(lengths, cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"])
    print(report, flush=True)
    if not ok:
        return []
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        try:
            rows.append(run_ours(shape, examples, args, device, budget, fa4=True))
        except Exception as exc:  # the rows already measured still get printed and saved
            print(f"ours with FA4 ({budget} tokens/step) failed: {exc!r}", flush=True)
            return rows
        twin = next(r for r in done if r.get("budget") == budget)  # (done: the FA2 rows)
        drift = max(abs(a - b) for a, b in zip(rows[-1]["losses"], twin["losses"], strict=True))
        rows[-1]["loss_drift_vs_fa2"] = drift  # for scale: FA2's own backward is not bit-reproducible either
        print(f"ours FA4 ({budget} tokens/step): {rows[-1]['tokens_per_s']:,.0f} tok/s; "
              f"largest loss difference from FA2 {drift:.1e}", flush=True)  # fmt: skip
    return rows


# -- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script in seconds")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 10; smoke 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps for the baseline")
    parser.add_argument("--warmup-ours", type=int, help="untimed steps for ours (compilation; default 6, smoke 2)")
    parser.add_argument(
        "--tokens-per-step", help="packed tokens per step, or several: 16384,32768 (default 16384; smoke 2048)"
    )
    parser.add_argument("--baseline-batch", type=int, default=8, help="padded samples per step for the baseline")
    parser.add_argument("--samples", type=int, help="synthetic samples (default 3000; smoke 200)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-fused-lora", action="store_true", help="PEFT's own LoRA forward (compiled)")
    chunk = TrainConfig.loss_chunk_size
    parser.add_argument(
        "--loss-chunk-size", type=int, default=chunk, help=f"supervised tokens per loss chunk ({chunk})"
    )
    parser.add_argument(
        "--log-every",
        type=int,
        default=1,
        help="our steps per log line (default 1; read a step late, so N should not matter)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--fa4", action="store_true", help="also run ours with FlashAttention-4 (benchmarks/fa4.py)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile", type=Path, help="profile three timed steps of ours (their timings then include the profiler)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke or not torch.cuda.is_available()
    if smoke and not args.smoke:
        print("no CUDA GPU: running the smoke configuration instead", flush=True)
    device = torch.device("cpu") if smoke else torch.device("cuda")
    args.steps = args.steps or (3 if smoke else 10)
    args.warmup_ours = args.warmup_ours if args.warmup_ours is not None else (2 if smoke else 6)
    if args.warmup_ours % args.log_every or args.steps % args.log_every:
        parser.error("--log-every must divide the warm-up and the timed steps (e.g. --log-every 5 --warmup-ours 10)")
    if args.profile and args.log_every != 1:
        parser.error("--profile counts steps by log lines: leave --log-every at 1")
    budgets = [int(t) for t in (args.tokens_per_step or ("2048" if smoke else "16384")).split(",")]
    args.samples = args.samples or (200 if smoke else 3000)
    shape = TINY if smoke else LLAMA_1B
    import peft
    import transformers

    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "varlen_kernel": attention.kernel_available(),
    }  # fmt: skip
    print(json.dumps(env), flush=True)
    ceiling = gemm_ceiling(device)
    if ceiling:
        print(f"bf16 8192^3 GEMM: {ceiling / 1e12:.0f} TFLOP/s", flush=True)
    examples = synthetic_chat(args.samples, shape)
    lengths = [len(e) for e in examples]
    supervised = sum(e.supervised for e in examples) / sum(lengths)
    print(f"data: {len(examples)} samples, mean {statistics.mean(lengths):.0f} tokens, {supervised:.0%} supervised, "
          f"ctx {mean_context(examples):.0f}", flush=True)  # fmt: skip

    probe = apply_lora(build_model(shape, torch.device("meta"), torch.bfloat16, "sdpa"), lora_config())
    fpt, parts = flops_per_token(probe, mean_context(examples))
    del probe
    print(
        f"FLOPs/token {fpt / 1e9:.3f} G (N_mm {parts['N_mm'] / 1e6:.1f}M, LoRA {parts['N_lora'] / 1e6:.2f}M)",
        flush=True,
    )

    agreement = loss_agreement(shape, examples, device)
    print(f"loss check (8 samples): ours {agreement['ours']:.4f} vs transformers {agreement['transformers']:.4f} "
          f"(relative diff {agreement['relative_diff']:.1e})", flush=True)  # fmt: skip

    results = []
    if not args.skip_baseline:
        try:
            results.append(run_baseline(shape, examples, args, device))
        except torch.OutOfMemoryError:
            reset_memory(device)
            args.baseline_batch //= 2
            print(f"baseline out of memory; retrying with padded batches of {args.baseline_batch}", flush=True)
            results.append(run_baseline(shape, examples, args, device))
        print(f"baseline: {results[-1]['tokens_per_s']:,.0f} tok/s", flush=True)
    for budget in budgets:
        results.append(run_ours(shape, examples, args, device, budget))
        print(f"ours ({budget} tokens/step): {results[-1]['tokens_per_s']:,.0f} tok/s "
              f"(warm-up incl. compile {results[-1]['warmup_s']:.0f}s)", flush=True)  # fmt: skip

    if args.fa4 and smoke:
        print("--fa4 needs a CUDA GPU: skipped", flush=True)
    elif args.fa4:
        results += fa4_rows(shape, examples, args, device, budgets, results)

    for r in results:
        r["mfu_989"] = r["tokens_per_s"] * fpt / PEAK_BF16
        r["mfu_measured"] = r["tokens_per_s"] * fpt / ceiling if ceiling else None
    print(f"\n{shape.name} on {env['device']}  (LoRA r16 all-linear; FLOPs/token {fpt / 1e9:.4g} G)")
    print(f"{'variant':96} {'real tok/s':>11} {'MFU/989':>8} {'MFU/GEMM':>9} {'peak GiB':>9}")
    for r in results:
        mfu_m = f"{r['mfu_measured']:.1%}" if r["mfu_measured"] else "n/a"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
        print(f"{r['variant']:96} {r['tokens_per_s']:>11,.0f} {r['mfu_989']:>8.1%} {mfu_m:>9} {peak:>9}")
    if not args.skip_baseline:
        for r in results[1:]:
            memory = f", peak {r['peak_gib']:.1f} vs {results[0]['peak_gib']:.1f} GiB" if r["peak_gib"] else ""
            print(f"speed-up {r['tokens_per_s'] / results[0]['tokens_per_s']:.1f}x{memory}: {r['variant']}")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "gemm_flops": ceiling, "flops_per_token": fpt, "flops": parts,
                                         "loss_check": agreement, "results": results}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
