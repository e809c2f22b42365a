"""The training loop: micro-batches → loss → LoRA update, with exact resume and progress events.

Separate from `train.py` (which loads data and models from a config) so that tests and the benchmark can
run the very same loop on examples and models they built in memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import signal
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from local_backend import checkpoint, selfcheck
from local_backend.config import ConfigError, TrainConfig
from local_backend.data import Example, collate, plan_batches
from local_backend.distributed import Distributed, shard, whole
from local_backend.late import LateRead, Mark
from local_backend.lora_fused import fuse_lora_layers
from local_backend.loss import chunk_loss_and_grad, linear_cross_entropy
from local_backend.model import Precision, backbone_and_head, decoder_layers
from local_backend.runfiles import CANCELLED, PAUSED, RUNNING, SUCCEEDED, RunFiles

_STOP_KINDS = (None, "pause", "cancel")  # the requests a run honours, in the order a multi-rank vote ranks them
_FORWARD_KEYS = ("attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


class TokenLoss(torch.nn.Module):
    """Σ cross-entropy over one micro-batch's supervised next tokens (the caller normalises)."""

    def __init__(self, peft_model: Any, chunk: int) -> None:
        super().__init__()
        self.backbone, self.head, self.softcap = backbone_and_head(peft_model)
        self.chunk = chunk
        self.chunk_fn: Any = chunk_loss_and_grad

    def hidden_at_targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """The hidden states of the positions whose next token is supervised."""
        kwargs = {k: batch[k] for k in _FORWARD_KEYS if k in batch}
        hidden = self.backbone(input_ids=batch["input_ids"], use_cache=False, **kwargs)[0]
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["target_index"])

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return linear_cross_entropy(self.hidden_at_targets(batch), self.head, batch["targets"], chunk=self.chunk,
                                    softcap=self.softcap, chunk_fn=self.chunk_fn)  # fmt: skip


@dataclass
class _Staged:
    """A log line whose values are still on their way from the device."""

    done: int
    epoch: int
    sums: LateRead  # loss sum and real tokens (summed across ranks), grad norm
    supervised: int
    lr: float


@dataclass
class _Clock:
    """Time between log lines on the device's timeline (late.Mark), and the mean step time for the ETA."""

    start_step: int
    start: Mark
    last: Mark = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.start

    def lap(self, mark: Mark, done: int) -> tuple[float, float]:
        """(seconds since the previous lap, seconds per step so far); `mark` must have been waited for."""
        elapsed, self.last = mark.seconds_since(self.last), mark
        return max(elapsed, 1e-9), mark.seconds_since(self.start) / max(done - self.start_step, 1)


def plan_steps(lengths: Sequence[int], cfg: TrainConfig, world: int) -> list[tuple[int, list[list[int]]]]:
    """Every optimizer step of the run as (epoch, micro-batches across all ranks); a pure function of the
    config and the data, which is what makes the data position of a checkpoint a single step number."""
    per_step = cfg.grad_accumulation * world
    steps = []
    for epoch in range(cfg.epochs):
        batches = plan_batches(
            lengths, batch_size=cfg.batch_size, tokens_per_batch=cfg.tokens_per_batch, seed=cfg.seed + epoch
        )
        steps += [(epoch, batches[i : i + per_step]) for i in range(0, len(batches), per_step)]
    return steps[: cfg.max_steps] if cfg.max_steps else steps


def run_fingerprint(cfg: TrainConfig, examples: Sequence[Example], steps: list[Any]) -> str:
    """What a checkpoint must match to be resumed: the training settings, the tokenized data and the step plan."""
    digest = hashlib.sha256(json.dumps([cfg.training_identity(), steps], sort_keys=True, default=str).encode())
    for e in examples:
        digest.update(array("q", e.input_ids).tobytes())
        digest.update(array("q", e.labels).tobytes())
    return digest.hexdigest()[:16]


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if cfg.lr_scheduler == "constant" else cfg.lr_scheduler
    return get_scheduler(
        name, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total), num_training_steps=total
    )


class StopRequests:
    """SIGTERM/SIGINT become a "cancel" request honoured at the next step boundary (after a checkpoint),
    instead of killing the process mid-step. Installed for the whole run, model loading included."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = "cancel"

    def install(self) -> StopRequests:
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


@dataclass
class Trainer:
    cfg: TrainConfig
    peft_model: Any
    tokenizer: Any  # for the pad id and checkpoints; None when the examples came pre-tokenized (benchmark)
    train_examples: list[Example]
    val_examples: list[Example]
    run: RunFiles
    device: torch.device
    precision: Precision
    dist: Distributed = field(default_factory=Distributed)
    reporters: Any = None
    stop: StopRequests = field(default_factory=StopRequests)
    fused_lora_layers: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    _stop_vote: LateRead | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.loss_fn = TokenLoss(self.peft_model, self.cfg.loss_chunk_size)
        self.steps = plan_steps([len(e) for e in self.train_examples], self.cfg, self.dist.world)
        self.fingerprint = run_fingerprint(self.cfg, self.train_examples, self.steps)
        self.compiled = self.cfg.compile is True or (self.cfg.compile == "auto" and self.device.type == "cuda")
        cuda = self.device.type == "cuda"
        if self.cfg.fused_lora is True or (self.cfg.fused_lora == "auto" and cuda and self.cfg.quantize == "none"):
            self.fused_lora_layers = fuse_lora_layers(self.peft_model)
        if self.cfg.check_loss and not self.dist.sharding(self.cfg.fsdp):  # (before compiling: other shapes)
            checked = selfcheck.check(
                self.loss_fn, self.peft_model, self.train_examples, packed=self.cfg.packing,
                batch_size=self.cfg.batch_size, pad_id=self.pad_id, device=self.device,
                autocast=self.precision.autocast,
            )  # fmt: skip
            if checked is not None:
                self._event(checked[0], kind="status", level=checked[1])
        elif self.cfg.check_loss and (scaled := selfcheck.scaled_logits(self.peft_model.get_base_model().config)):
            raise ConfigError(f"train config: the model scales its logits ({scaled}), which the trainer does not")
        if self.compiled:
            import torch._dynamo

            torch._dynamo.config.suppress_errors = self.cfg.compile == "auto"  # fall back to eager, never fail
            for layer in decoder_layers(self.loss_fn.backbone):
                layer.compile()
            self.loss_fn.chunk_fn = torch.compile(chunk_loss_and_grad, dynamic=True)
        self.sharded = self.dist.sharding(self.cfg.fsdp)
        if self.sharded:
            shard(self.loss_fn, decoder_layers(self.loss_fn.backbone), self.precision.autocast)
        self.params = list(checkpoint.trainable(self.peft_model).values())  # sharding replaced them

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    # -- batches -----------------------------------------------------------------------------------------

    def _batch(self, indices: list[int], examples: list[Example]) -> dict[str, Any]:
        cfg = self.cfg
        if self.compiled:  # fixed row length and a constant max segment length: compiled code is reused
            batch = collate([examples[i] for i in indices], packed=cfg.packing, pad_id=self.pad_id,
                            pad_to=cfg.tokens_per_batch, max_segment=cfg.max_seq_length)  # fmt: skip
            if "max_length_q" in batch:
                batch["max_length_q"] = batch["max_length_k"] = cfg.max_seq_length
        else:
            batch = collate([examples[i] for i in indices], packed=cfg.packing, pad_id=self.pad_id)
        pin = self.device.type == "cuda"  # pinned memory: the copy is asynchronous and leaves the host free
        return {
            k: (v.pin_memory() if pin else v).to(self.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }

    def _padded(self, batches: Iterable[dict[str, Any]], passes: int) -> Iterator[tuple[dict[str, Any], bool]]:
        """(batch, real) for each of this rank's batches; sharded, then zero-weight fillers up to rank 0's `passes`,
        since FSDP's gathers need every rank to run each pass."""
        real = 0
        for batch in batches:
            real += 1
            yield batch, True
        for _ in range(passes - real if self.sharded else 0):
            yield self._filler, False

    @functools.cached_property
    def _filler(self) -> dict[str, Any]:
        """A batch run with zero weight by a sharded rank short of micro-batches (FSDP's gathers need every rank):
        the shortest example."""
        lengths = [len(e) for e in self.train_examples]
        return self._batch([lengths.index(min(lengths))], self.train_examples)

    def _step_batches(self, step: int) -> list[dict[str, Any]]:
        """This rank's micro-batches of one optimizer step, on the device."""
        accumulation, rank = self.cfg.grad_accumulation, self.dist.rank
        micro = self.steps[step][1][rank * accumulation : (rank + 1) * accumulation]
        return [self._batch(indices, self.train_examples) for indices in micro]

    def _autocast(self) -> Any:
        dtype = self.precision.autocast
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    # -- evaluation --------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.val_examples:
            return None
        self.peft_model.eval()
        lengths = [len(e) for e in self.val_examples]
        batches = plan_batches(
            lengths, batch_size=self.cfg.batch_size, tokens_per_batch=self.cfg.tokens_per_batch, seed=None
        )
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        mine = batches[self.dist.rank :: self.dist.world]
        passes = math.ceil(len(batches) / self.dist.world)  # rank 0's count, the most
        for batch, real in self._padded((self._batch(b, self.val_examples) for b in mine), passes):
            with self._autocast():
                loss_sum = self.loss_fn(batch).double()
            if real:
                total[0] += loss_sum
                total[1] += len(batch["targets"])
        if self.sharded:  # FSDP keeps the root's weights whole after a forward without gradients: shard them again
            self.loss_fn.reshard()  # type: ignore[operator]
        self.peft_model.train()
        self.dist.sum_(total)
        return float(total[0] / total[1].clamp(min=1))

    # -- the loop ----------------------------------------------------------------------------------------

    def _stop_requested(self) -> str | None:
        request = self.stop.requested or (self.run.request() if self.dist.main else None)
        if self.dist.world == 1:
            return request
        # Ranks agree on a stop through an all-reduce that is read a step late, as log lines are: no step waits for
        # it, and every rank stops after the same step (one step later than a single process would). The vote
        # carries the kind: 0 go on, 1 pause, 2 cancel (a cancel anywhere wins).
        flag = torch.tensor([float(_STOP_KINDS.index(request) if request in _STOP_KINDS else 2)])
        if self.device.type == "cuda":
            flag = flag.pin_memory().to(self.device, non_blocking=True)
        vote, self._stop_vote = self._stop_vote, LateRead(self.dist.max_(flag))
        return _STOP_KINDS[int(vote.values()[0])] if vote is not None else None

    def _event(self, message: str, **data: Any) -> None:
        if self.dist.main:
            self.run.add_event(message, **data)
            print(message, flush=True)

    def run_loop(self) -> dict[str, Any]:
        cfg, total = self.cfg, len(self.steps)
        if total == 0:
            raise ConfigError("train config: the data gives no optimizer step")
        optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=self.device.type == "cuda"
        )
        scheduler = _scheduler(cfg, optimizer, total)
        start, rng, initial_val = 0, None, None
        found = self.run.checkpoint_dirs() if cfg.resume != "never" else []
        if cfg.resume == "must" and not found:
            raise ConfigError(f"train config: resume = 'must' but {self.run.checkpoints} holds no checkpoint")
        latest, weights, state = self._read_newest(found)
        if latest is not None:
            legacy = hashlib.sha256(json.dumps(self.steps).encode()).hexdigest()[:16]  # before 2026-11-27
            if state.get("fingerprint") == legacy:
                self._event(f"{latest.name} was saved by an earlier version, which recorded only the step plan: "
                            "its data and settings cannot be checked", kind="status", level="warning")  # fmt: skip
            elif state.get("fingerprint") != self.fingerprint:
                raise ConfigError(
                    f"{latest}: the checkpoint was made with other data or training settings (model, LoRA, "
                    "optimizer, batching, seed, steps), so it cannot be continued here; use a new output_dir, or "
                    "the settings and data it was made with"
                )
            checkpoint.restore(latest, weights, state, peft_model=self.peft_model, optimizer=optimizer,
                               scheduler=scheduler)  # fmt: skip
            start, self.history = state["step"], state["history"]
            ranks = state.get("rng_by_rank") or []  # (checkpoints before 2026-11-27 hold rank 0's alone)
            rng = ranks[self.dist.rank] if len(ranks) == self.dist.world else state["rng"]
            initial_val = state.get("initial_val_loss")
            self._event(f"resumed from {latest.name} at step {start}/{total}", kind="status", step=start)
        elif self.val_examples:
            initial_val = self.evaluate()
            self._event(f"step 0/{total} val_loss {initial_val:.4f}", kind="metrics", step=0, val_loss=initial_val)

        if self.dist.main:  # only now: a refused resume leaves the run's config as it was
            self.cfg.save(self.run.config)
            self.run.update_status(state=RUNNING, phase="training", step=start, total_steps=total)
        if rng is not None:
            checkpoint.set_rng_state(rng)
        return self._steps(start, total, optimizer, scheduler, initial_val)

    def _read_newest(self, found: list[Path]) -> tuple[Path | None, dict[str, torch.Tensor], dict[str, Any]]:
        """The newest checkpoint that can be read, read; a damaged one is reported and the one before tried."""
        for path in reversed(found):
            try:
                return path, *checkpoint.read(path)
            except checkpoint.DamagedCheckpoint as exc:
                self._event(f"checkpoint {exc} is damaged: skipped", kind="status", level="warning")
        if found:
            raise ConfigError(f"train config: every checkpoint in {self.run.checkpoints} is damaged; move them "
                              "aside to start again from step 0")  # fmt: skip
        return None, {}, {}

    def _save(
        self, step: int, optimizer: Any, scheduler: Any, initial_val: float | None, metrics: dict[str, float]
    ) -> None:
        adapter = checkpoint.trainable_state(self.peft_model)  # every rank: sharded state is gathered
        optimizer_state = checkpoint.optimizer_state(self.peft_model, optimizer)
        rngs = self.dist.gather(checkpoint.rng_state())  # each rank draws its own dropout masks
        if self.dist.main:
            path = checkpoint.save(
                self.run, step=step, peft_model=self.peft_model, adapter=adapter, tokenizer=self.tokenizer,
                optimizer=optimizer_state, scheduler=scheduler, history=self.history, metrics=metrics,
                keep=self.cfg.save_total_limit,
                extra={"fingerprint": self.fingerprint, "initial_val_loss": initial_val, "rng_by_rank": rngs},
            )  # fmt: skip
            self._event(f"checkpoint {path.name}", kind="checkpoint", step=step, path=str(path))
        self.dist.barrier()

    def _steps(
        self, start: int, total: int, optimizer: Any, scheduler: Any, initial_val: float | None
    ) -> dict[str, Any]:
        cfg = self.cfg
        self.peft_model.train()
        window = self._new_window()
        clock = _Clock(start, Mark(self.device))
        metrics: dict[str, float] = {}
        val_loss = None
        unread: list[_Staged] = []  # log lines whose values are on their way from the device
        self._stop_vote = None
        upcoming = self._step_batches(start) if start < total else []
        try:
            for step in range(start, total):
                epoch = self.steps[step][0]
                grad_norm = self._optimizer_step(step, upcoming, window, optimizer, scheduler)
                done, last = step + 1, step + 1 == total
                # While the device works on this step, the host builds and sends the next step's batches and reads
                # the previous log line (ready by now): the device never waits for the host between steps.
                upcoming = [] if last else self._step_batches(done)
                evaluate = bool(self.val_examples and cfg.eval_steps and done % cfg.eval_steps == 0 and not last)
                stop = self._stop_requested()  # asked every step, so that every rank takes part in each vote
                if last:
                    stop = None  # the training is complete: it ends as a success, with its adapter
                save = bool(stop or (cfg.save_steps and done % cfg.save_steps == 0 and not last))
                log = done % cfg.logging_steps == 0 or last or save  # a checkpoint counts every token
                if log:
                    sums = torch.cat([self.dist.sum_(window["sums"]), grad_norm.double()[None]])
                    unread.append(_Staged(done, epoch, LateRead(sums), window["sup"], scheduler.get_last_lr()[0]))
                    window = self._new_window()
                keep = 1 if log and not (evaluate or save or last) else 0  # else read now: events stay in order
                while len(unread) > keep:
                    metrics = self._log(unread.pop(0), total, clock)
                if evaluate:
                    val_loss = self.evaluate()
                    self._event(
                        f"step {done}/{total} val_loss {val_loss:.4f}", kind="metrics", step=done, val_loss=val_loss
                    )
                if save:
                    self._save(done, optimizer, scheduler, initial_val, metrics)
                if stop:
                    state = PAUSED if stop == "pause" else CANCELLED
                    self._event(
                        f"{state} at step {done}/{total}; resume continues from checkpoint step-{done:06d}",
                        kind="status",
                    )
                    return self._outcome(state, done, total, initial_val, val_loss, clock.start.host)
        except Exception:
            with contextlib.suppress(Exception):  # the last good steps' lines, if the device can still give them
                for line in unread:
                    self._log(line, total, clock)
            raise
        if self.val_examples:
            val_loss = self.evaluate()
            self._event(f"step {total}/{total} val_loss {val_loss:.4f}", kind="metrics", step=total, val_loss=val_loss)
        if cfg.save_steps:
            self._save(total, optimizer, scheduler, initial_val, metrics)
        return self._outcome(SUCCEEDED, total, total, initial_val, val_loss, clock.start.host)

    def _optimizer_step(
        self, step: int, batches: list[dict[str, Any]], window: dict[str, Any], optimizer: Any, scheduler: Any
    ) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches, then one update; returns the gradient norm.
        Sharded, every rank runs as many passes as rank 0, which holds the most (fillers with zero weight where it
        has fewer), gradients are reduce-scattered after the last, and FSDP's average over ranks is scaled to a sum."""
        micro = self.steps[step][1]
        step_sup = sum(self.train_examples[i].supervised for mb in micro for i in mb)  # global, known up front
        weight = (self.dist.world if self.sharded else 1) / step_sup
        passes = list(self._padded(batches, min(self.cfg.grad_accumulation, len(micro))))
        for i, (batch, real) in enumerate(passes):
            if self.sharded:
                self.loss_fn.set_requires_gradient_sync(i == len(passes) - 1)  # type: ignore[operator]
            with self._autocast():
                loss_sum = self.loss_fn(batch)
            (loss_sum * (weight if real else 0.0)).backward()
            if real:
                window["sums"][0] += loss_sum.detach()
                window["sums"][1] += batch["num_tokens"]
        window["sup"] += step_sup
        if not self.sharded:
            self.dist.sum_grads(self.params)
        grad_norm = whole(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm or float("inf")))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _new_window(self) -> dict[str, Any]:
        """Sums since the last log line: loss and real tokens on the device (no sync), supervised tokens."""
        return {"sums": torch.zeros(2, dtype=torch.float64, device=self.device), "sup": 0}

    def _log(self, staged: _Staged, total: int, clock: _Clock) -> dict[str, Any]:
        loss_sum, tokens, grad_norm = staged.sums.values()  # waits for the step that made them, no later one
        done, supervised = staged.done, staged.supervised
        elapsed, per_step = clock.lap(staged.sums.mark, done)
        metrics = {
            "step": done, "total_steps": total, "epoch": staged.epoch, "loss": loss_sum / max(supervised, 1),
            "lr": staged.lr, "grad_norm": grad_norm, "tokens": int(tokens), "supervised_tokens": supervised,
            "seconds": elapsed, "tokens_per_s": tokens / elapsed, "supervised_tokens_per_s": supervised / elapsed,
            "eta_s": per_step * (total - done),
        }  # fmt: skip
        self.history.append(metrics)
        if self.dist.main:  # `fth status` / `fth wait` read the progress here, and a killed run says where it was
            self.run.update_status(step=done)
        if self.reporters is not None:
            self.reporters.log({k: metrics[k] for k in ("loss", "lr", "grad_norm", "tokens_per_s")}, done)
        self._event(
            f"step {done}/{total} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e} {metrics['tokens_per_s']:,.0f} "
            f"tok/s eta {metrics['eta_s']:.0f}s", kind="metrics", **metrics,
        )  # fmt: skip
        return metrics

    def _outcome(self, state: str, done: int, total: int, initial_val: float | None, val_loss: float | None,
                 began: float) -> dict[str, Any]:  # fmt: skip
        trained = [h for h in self.history if "loss" in h]
        return {
            "status": state, "step": done, "total_steps": total, "initial_val_loss": initial_val,
            "val_loss": val_loss, "train_loss": trained[-1]["loss"] if trained else None,
            "trained_tokens": sum(h.get("tokens", 0) for h in self.history),
            "train_seconds": time.perf_counter() - began, "history": self.history,
        }  # fmt: skip
