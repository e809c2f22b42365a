"""`train(config) -> summary` and `python -m local_backend.train --config config.json`.

Loads the tokenizer, data and model a TrainConfig names, runs the loop (`loop.py`), saves the PEFT adapter
in its standard format (and optionally a merged model, verified by comparing logits), and keeps the run
directory's status.json / events.jsonl / summary.json current (`runfiles.py`). Exit codes: 0 finished
(or paused/cancelled cleanly on request), 1 failed, 2 bad config or data.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from typing import Any, NoReturn

from local_backend.config import ConfigError, TrainConfig
from local_backend.data import DataError
from local_backend.runfiles import FAILED, RUNNING, SUCCEEDED, RunFiles, now_iso, process_stamp, write_json


class FolderInUse(ConfigError):
    """The output_dir holds another run's checkpoints."""


def train(config: TrainConfig) -> dict[str, Any]:
    """Run one fine-tuning job to the end (or until asked to pause/cancel) and return its summary."""
    from local_backend.loop import StopRequests
    from local_backend.reporting import check_available

    run = RunFiles(config.output_dir)
    if config.resume == "never" and (found := run.checkpoint_dirs()):  # refused before anything there is touched
        raise FolderInUse(
            f"train config: resume = 'never', but {run.checkpoints} holds checkpoints of an earlier run "
            f"({found[-1].name}, ...) that this run's would mix with; use a new output_dir or delete that folder"
        )

    check_available(config.report_to)
    stop = StopRequests().install()
    try:
        return _train(config, stop)
    finally:
        stop.restore()


def _train(config: TrainConfig, stop: Any) -> dict[str, Any]:
    import torch

    from local_backend import checkpoint, data, model
    from local_backend.distributed import Distributed
    from local_backend.loop import Trainer
    from local_backend.reporting import Reporters

    began = time.time()
    dist = Distributed.from_env()
    run = RunFiles(config.output_dir)
    if dist.main:
        run.root.mkdir(parents=True, exist_ok=True)
        run.start_clock()
        # the process a watcher follows and stops: under torchrun, torchrun itself (its workers are its children)
        pid = os.getpid() if dist.world == 1 else os.getppid()
        stamp = process_stamp(pid)
        run.update_status(state=RUNNING, phase="loading", pid=pid, pid_stamp=stamp, started_at=now_iso(), error=None)
        run.add_event("loading tokenizer, data and model", kind="status")
    torch.manual_seed(config.seed)
    device = model.pick_device(dist.local_rank)
    precision = model.pick_precision(config, device)
    tokenizer = model.load_tokenizer(config)

    train_examples, report = data.load_examples(
        config.train_file, tokenizer, max_seq_length=config.max_seq_length, chat_template=config.chat_template
    )
    reports = [report]
    val_examples: list[data.Example] = []
    if config.validation_file:
        val_examples, val_report = data.load_examples(
            config.validation_file, tokenizer, max_seq_length=config.max_seq_length, chat_template=config.chat_template
        )
        reports.append(val_report)
    template, _ = data.resolve_template(tokenizer, config.chat_template)
    tokenizer.chat_template = template  # saved with the adapter and checkpoints: replies render as training did
    warnings = [w for r in reports for w in (r.warnings or [])]
    if eot := data.end_of_turn_warning(tokenizer, template):
        warnings.append(eot)
    if dist.main:
        sample = data.render_sample(tokenizer, train_examples[0])
        run.sample.write_text(sample + "\n", encoding="utf-8")
        for r in reports:
            run.add_event(r.summary(), kind="data", examples=r.examples, tokens=r.tokens, supervised=r.supervised)
        for w in warnings:
            run.add_event(w, level="warning")
        print("rendered sample (supervised text between ⟦ ⟧):\n" + sample, flush=True)

    attn = model.pick_attention(config, device)
    sharded = dist.sharding(config.fsdp)  # then each rank reads the model on the CPU and keeps its shard on the GPU
    host = torch.device("cpu") if sharded else device  # also where the merge runs: the whole model fits no GPU
    peft_model = model.apply_lora(model.load_base_model(config, host, precision, attn), config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    reporters = None
    if dist.main:
        weights = str(precision.param_dtype).removeprefix("torch.")
        layout = f", sharded over {dist.world} processes (FSDP)" if sharded else ""
        run.add_event(
            f"model {config.model}: {total / 1e6:.1f}M parameters, {trainable / 1e6:.2f}M trainable "
            f"(LoRA r{config.lora_rank}); device {device}, weights {weights}, attention {attn}{layout}",
            kind="status",
            attention=attn,
            device=str(device),
            trainable_params=trainable,
            total_params=total,
        )
        name = config.run_name or run.root.name
        reporters = Reporters(config.report_to, log_dir=run.root, run_name=name, config=config.to_dict())

    trainer = Trainer(
        config, peft_model, tokenizer, train_examples, val_examples, run, device, precision, dist, reporters, stop
    )
    try:
        outcome = trainer.run_loop()
    finally:
        if reporters is not None:
            reporters.close()
    summary: dict[str, Any] = {**outcome, "data": [r.__dict__ for r in reports], "warnings": warnings,
                               "attention": attn, "device": str(device), "compiled": trainer.compiled,
                               "fused_lora_layers": trainer.fused_lora_layers}  # fmt: skip
    adapter = checkpoint.trainable_state(peft_model) if outcome["status"] == SUCCEEDED else {}  # every rank
    if outcome["status"] == SUCCEEDED and dist.main:
        peft_model.save_pretrained(run.adapter, state_dict=adapter)
        tokenizer.save_pretrained(run.adapter)
        summary["adapter"] = str(run.adapter.resolve())
        run.add_event(f"adapter saved to {run.adapter}", kind="artifact", path=summary["adapter"])
        if config.merge:
            from local_backend.merge import merge_and_verify

            del trainer, peft_model
            check = merge_and_verify(config, run.adapter, run.merged, probes=train_examples[:4], device=host,
                                     dtype=precision.param_dtype, tokenizer=tokenizer)  # fmt: skip
            summary["merged"] = str(run.merged.resolve())
            summary["merge_check"] = check
            run.add_event(f"merged model saved to {run.merged} (max |Δlogit| {check['max_abs_diff']:.2e})",
                          kind="artifact", path=summary["merged"], **check)  # fmt: skip
    total_runtime = run.runtime_s()  # every process of the run, on the main rank
    summary["runtime_s"] = time.time() - began if total_runtime is None else total_runtime
    if dist.main:
        write_json(run.summary, summary)
        run.update_status(state=outcome["status"], phase="done", step=outcome["step"])
        run.add_event(f"{outcome['status']}", kind="status", state=outcome["status"])
    dist.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TrainConfig as JSON")
    parser.add_argument("--resume", choices=("auto", "never", "must"), help="override the config's resume")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.load(args.config)
        if args.resume:
            config.resume = args.resume
    except ConfigError as exc:
        where = "" if str(exc).startswith(str(args.config)) else f"{args.config}: "  # load names it on read errors
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    run = RunFiles(config.output_dir)
    try:
        train(config)
        return 0
    except (ConfigError, DataError) as exc:
        if not isinstance(exc, FolderInUse):  # that folder belongs to another run: nothing is written there
            _fail(run, f"{type(exc).__name__}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        _fail(run, f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1


def exit_process(code: int) -> NoReturn:
    """End a process that a launcher (torchrun) started. DTensor's caches keep FSDP's device mesh, and with it
    the process group, alive past `destroy_process_group`, so gloo's threads would be torn down while the
    interpreter exits, which now and then aborts a run that has finished ("terminate called without an active
    exception", SIGABRT). Such a process skips that teardown once its output is flushed."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _fail(run: RunFiles, error: str) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    run.root.mkdir(parents=True, exist_ok=True)
    run.update_status(state=FAILED, phase="done", error=error[:2000])
    run.add_event(error[:2000], kind="status", level="error", state=FAILED)


if __name__ == "__main__":
    exit_process(main())
