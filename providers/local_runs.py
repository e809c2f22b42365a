"""The local "platform" behind the `local` provider: run directories under one root, and the detached
trainer processes working in them. Stdlib only; the files' format is local_backend/runfiles.py.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from local_backend import runfiles

DIED = "died"  # native state: the process is gone without writing a final status


class RunNotFound(FileNotFoundError):
    pass


class LaunchFailed(RuntimeError):
    pass


class LocalRunner:
    """The local "platform": run directories plus the processes training in them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _run(self, run_id: str) -> runfiles.RunFiles:
        run = runfiles.RunFiles(self.root / "runs" / run_id)
        if not run.config.exists():
            raise RunNotFound(errno.ENOENT, f"no local run '{run_id}'", str(run.root))
        return run

    def runs(self) -> list[str]:
        base = self.root / "runs"
        found = base.iterdir() if base.is_dir() else ()
        return sorted(p.name for p in found if not p.name.startswith(".") and (p / "config.json").exists())

    def store_data(self, path: Path, content_hash: str) -> str:
        """Snapshot a data file by content, so edits during training change nothing ("upload")."""
        target = self.root / "data" / f"{content_hash}.jsonl"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        return str(target)

    def data_files(self) -> int:
        folder = self.root / "data"
        return len(list(folder.glob("*.jsonl"))) if folder.is_dir() else 0

    def create(self, key: str, config: dict[str, Any], *, gpus: int = 1, python: str | None = None) -> str:
        """Create and start a run; the same key always names the same run, so a retry never starts two. The
        run folder appears whole (built aside, then renamed), so a failure halfway leaves no run behind."""
        run_id = "run-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        root = self.root / "runs" / run_id
        if root.exists():
            return run_id
        root.parent.mkdir(parents=True, exist_ok=True)
        draft = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=root.parent))
        try:
            run = runfiles.RunFiles(draft)
            run.update_status(state=runfiles.QUEUED, phase="starting", gpus=gpus, python=python or sys.executable)
            runfiles.write_json(run.config, {**config, "output_dir": str(root.resolve())})
            draft.rename(root)
        except OSError:
            shutil.rmtree(draft, ignore_errors=True)
            if root.exists():  # another process created it first (same key): that run is this one
                return run_id
            raise
        self.launch(run_id, resume=None)
        return run_id

    @contextlib.contextmanager
    def launching(self, run_id: str) -> Iterator[None]:
        """One launcher at a time per run, so that two resumes at once start one trainer: the second sees the
        first one's. The lock is released when the file closes, or when its process dies."""
        with open(self._run(run_id).root / ".launch.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def launch(self, run_id: str, resume: str | None = "auto") -> None:
        """Start the trainer in the run's folder; `resume` overrides the config's (None: the config's own)."""
        run = self._run(run_id)
        status = run.read_status() or {}
        python, gpus = status.get("python") or sys.executable, int(status.get("gpus") or 1)
        entry = ["-m", "local_backend.train", "--config", str(run.config), *(["--resume", resume] if resume else [])]
        command = [python, *entry] if gpus == 1 else [python, "-m", "torch.distributed.run", "--standalone",
                                                       f"--nproc-per-node={gpus}", *entry]  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            run.control.unlink()
        try:
            with open(run.log, "ab") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=run.root,
                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
        except OSError as exc:
            run.update_status(state=runfiles.FAILED, error=f"could not start {python}: {exc.strerror}")
            raise LaunchFailed(f"could not start the trainer with {python}: {exc.strerror}") from None
        stamp = runfiles.process_stamp(process.pid)
        run.update_status(state=runfiles.QUEUED, phase="starting", pid=process.pid, pid_stamp=stamp, error=None)

    def state(self, run_id: str) -> dict[str, Any]:
        """status.json, or state "died" when the process is gone without a final status."""
        run = self._run(run_id)
        status = run.read_status() or {"state": runfiles.QUEUED}
        if status.get("state") in (runfiles.QUEUED, runfiles.RUNNING) and not _alive(status):
            status = run.read_status() or status  # it may have finished between the two reads
            if status.get("state") in (runfiles.QUEUED, runfiles.RUNNING):
                lines = run.log.read_text(errors="replace").strip().splitlines()[-5:] if run.log.exists() else []
                tail = " | ".join(lines)[-800:]
                error = (
                    f"the trainer process stopped without a final status at step {status.get('step', 0)} (killed, "
                    f"out of memory, or crashed); `fth resume` goes on from the newest checkpoint. Last log lines: "
                    f"{tail}"
                )
                status = {**status, "state": DIED, "error": error}
        elif status.get("state") in (runfiles.QUEUED, runfiles.RUNNING) and (asked := run.request()):
            status = {**status, "state": "cancelling" if asked == "cancel" else "pausing"}
        return status

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self._run(run_id).read_events()

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        return [  # a checkpoint pruned between the listing and the read is left out
            {**meta, "path": str(p)}
            for p in self._run(run_id).checkpoint_dirs()
            if (meta := runfiles.read_json(p / "meta.json")) and {"step", "created_at"} <= meta.keys()
        ]

    def summary(self, run_id: str) -> dict[str, Any] | None:
        return runfiles.read_json(self._run(run_id).summary)

    def log_lines(self, run_id: str, start: int = 0, *, complete: bool = False) -> tuple[list[str], int]:
        """The trainer's output lines from byte `start` on, and where they end; `complete`: without a last line
        still being written (it comes whole next time)."""
        run = self._run(run_id)
        if not run.log.exists():
            return [], start
        with open(run.log, "rb") as fh:
            fh.seek(start)
            data = fh.read()
        if complete:
            data = data[: data.rfind(b"\n") + 1]
        return data.decode(errors="replace").splitlines(), start + len(data)

    def request(self, run_id: str, what: Literal["cancel", "pause"]) -> dict[str, Any]:
        """Ask the trainer to stop at its next step; a run whose process is gone is marked at once."""
        run = self._run(run_id)
        status = self.state(run_id)
        if status["state"] in runfiles.TERMINAL:
            return status
        if status["state"] in (DIED, runfiles.PAUSED):
            final = runfiles.CANCELLED if what == "cancel" else runfiles.PAUSED
            return run.update_status(state=final, error=None)
        runfiles.write_json(run.control, {"request": what})
        return {**status, "state": "cancelling" if what == "cancel" else "pausing"}

    def process_alive(self, run_id: str) -> bool:
        """Whether the run's process still runs, whatever its status says (it writes "paused" before it exits)."""
        return _alive(self._run(run_id).read_status() or {})

    def kill(self, run_id: str) -> None:
        """SIGKILL the run's process group (tests; what the OOM killer does)."""
        status = self._run(run_id).read_status() or {}
        if _alive(status):
            pid = status["pid"]
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _alive(status: dict[str, Any]) -> bool:
    """Whether the process a status names still runs: its pid, and where recorded its stamp (a pid taken over by
    another process after a reboot is not the trainer)."""
    pid, stamp = status.get("pid"), status.get("pid_stamp")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if stamp and (now := runfiles.process_stamp(pid)) and now != stamp:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    return True
