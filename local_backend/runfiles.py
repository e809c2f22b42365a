"""The files a run writes in its output directory: the only channel between the trainer and whoever
watches it (`providers/local.py`, a SageMaker container's log shipper, a user with `cat`).

Stdlib only. Layout of a run directory:

    config.json        the TrainConfig
    status.json        {"state", "pid", "pid_stamp", "step", "total_steps", "runtime_s", "error", "started_at", ...}
    events.jsonl       one JSON object per line: {"time", "kind", "level", "message", "data"}
    control.json       written by the launcher: {"request": "cancel" | "pause"}; the trainer polls it
    sample.txt         the first training example as rendered, supervised spans marked
    train.log          the process's stdout/stderr (written by the launcher)
    checkpoints/step-000010/   adapter + trainer_state.pt + meta.json
    adapter/           the final PEFT adapter (standard format) and tokenizer
    merged/            optional merged model
    summary.json       what train() returned
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Trainer states, in order of a normal life. "queued" is written by the launcher before the process runs.
QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "paused",
    "succeeded",
    "failed",
    "cancelled",
)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
CHECKPOINT_PREFIX = "step-"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def process_stamp(pid: int) -> str | None:
    """What tells this process from a later one given the same pid (after a reboot, or once pids wrap): the
    boot's id and the process's start time, on Linux; None where /proc does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22: starttime
    except (OSError, IndexError):
        return None
    return f"{boot}:{started}"


class DamagedFile(ValueError):
    """A run file that is not the JSON its writer writes (cut short by a crash of the machine, or edited)."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file. No fsync: the status is
    written at every log line, and a sync there would hold up the training loop."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFile(f"{path} is damaged ({exc})") from None
    return data if isinstance(data, dict) else None


class RunFiles:
    """Paths and readers/writers for one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._last_event: datetime | None = None
        self._status: dict[str, Any] = {}  # the last status this process wrote
        self._clock: tuple[float, float] | None = None  # (this process's start, earlier processes' run time)

    config = property(lambda self: self.root / "config.json")
    status = property(lambda self: self.root / "status.json")
    events = property(lambda self: self.root / "events.jsonl")
    control = property(lambda self: self.root / "control.json")
    sample = property(lambda self: self.root / "sample.txt")
    log = property(lambda self: self.root / "train.log")
    checkpoints = property(lambda self: self.root / "checkpoints")
    adapter = property(lambda self: self.root / "adapter")
    merged = property(lambda self: self.root / "merged")
    summary = property(lambda self: self.root / "summary.json")

    def read_status(self) -> dict[str, Any] | None:
        return read_json(self.status)

    def start_clock(self) -> None:
        """Count this process's time in `runtime_s`, after the time earlier processes of the run recorded there
        (a resumed run's total; a killed one's up to its last status)."""
        try:
            before = (self.read_status() or {}).get("runtime_s")
        except DamagedFile:
            before = None
        self._clock = (time.monotonic(), float(before) if isinstance(before, int | float) else 0.0)

    def runtime_s(self) -> float | None:
        return None if self._clock is None else self._clock[1] + time.monotonic() - self._clock[0]

    def update_status(self, **fields: Any) -> dict[str, Any]:
        try:
            before = self.read_status() or {}
        except DamagedFile:  # rewritten from what this process last wrote: the run goes on, its status mended
            before = self._status
        if self._clock is not None:
            fields = {"runtime_s": self.runtime_s(), **fields}
        status = {**before, **fields, "updated_at": now_iso()}
        write_json(self.status, status)
        self._status = status
        return status

    def add_event(self, message: str, *, kind: str = "message", level: str = "info", **data: Any) -> None:
        # strictly increasing times, so "events since T" never skips one written in the same microsecond
        moment = datetime.now(UTC)
        if self._last_event is not None and moment <= self._last_event:
            moment = self._last_event + timedelta(microseconds=1)
        line = json.dumps({"time": moment.isoformat(), "kind": kind, "level": level, "message": message, "data": data})
        with open(self.events, "a+b") as fh:
            if self._last_event is None and fh.tell() > 0:  # first event of this process: end a line torn by
                fh.seek(-1, os.SEEK_END)  # a killed one, so it does not swallow this one
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode() + b"\n")
        self._last_event = moment

    def read_events(self) -> list[dict[str, Any]]:
        """Events in order; a torn last line (the writer is mid-append) is skipped."""
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def request(self) -> str | None:
        data = read_json(self.control)
        return data.get("request") if data else None

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints (meta.json is written last), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [
            p for p in self.checkpoints.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "meta.json").exists()
        ]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoint_dirs()
        return found[-1] if found else None
