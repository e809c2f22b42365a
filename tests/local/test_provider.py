"""The `local` provider: a detached trainer process tracked like any platform's job."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_hub import api
from finetune_hub.errors import ConfigError
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.local import LocalJob
from tests.conftest import write_dpo_jsonl

ROOT = Path(__file__).resolve().parents[2]


def spec_dict(model: Path, data: tuple[Path, Path], **local: Any) -> dict[str, Any]:
    return {
        "name": "local-test",
        "base_model": {"local": str(model)},
        "data": {"train": str(data[0]), "validation": str(data[1])},
        "hyperparameters": {"epochs": 1, "batch_size": 2, "learning_rate": 1e-2},
        "lora": {"rank": 4, "dropout": 0.1},
        "seed": 3,
        "providers": {"local": {"save_steps": 4, **local}},
    }


def fth(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"FTH_HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", "from finetune_hub.cli import main; raise SystemExit(main())", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)


def wait_for(job: Any, statuses: set[JobStatus], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while (state := job.sync()).status not in statuses:
        assert time.monotonic() < deadline, f"still {state} after {timeout}s"
        time.sleep(0.1)
    return state


def test_submit_returns_at_once_and_wait_follows_to_the_end(
    llama_model: Path, chat_data, tmp_path: Path, fth_home: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(llama_model, chat_data)))
    began = time.monotonic()
    submitted = fth("submit", str(spec), "--provider", "local", "--json", home=fth_home)
    assert submitted.returncode == 0, submitted.stderr
    assert time.monotonic() - began < 30  # the trainer alone takes longer than that to import and load
    job_id = json.loads(submitted.stdout)["id"]
    status = json.loads(fth("status", job_id, "--json", home=fth_home).stdout)
    assert status["status"] in ("queued", "running")
    followed = fth("logs", job_id, "--follow", home=fth_home)  # the trainer's output as it comes, to the end
    assert followed.returncode == 0 and "checkpoint step-000024" in followed.stdout, followed.stderr
    waited = fth("wait", job_id, "--interval", "0.2", "--timeout", "180", home=fth_home)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    job = api.open_job(job_id, store=JobStore(fth_home / "jobs.db"))
    assert job.refresh().status is JobStatus.SUCCEEDED
    result = job.result()
    assert result.model and (Path(result.model) / "adapter_model.safetensors").exists()
    assert result.metrics["val_loss"] < result.metrics["initial_val_loss"] and result.trained_tokens
    metrics = [e.data for e in job.events() if e.kind == "metrics" and "loss" in e.data]
    assert metrics and {"loss", "tokens_per_s", "eta_s"} <= metrics[-1].keys()
    assert [c.step for c in job.checkpoints()] == [16, 20, 24] and job.checkpoints()[-1].metrics["loss"] > 0
    assert any("rendered sample" in line for line in job.logs())
    as_json = [json.loads(line) for line in fth("logs", job_id, "--json", home=fth_home).stdout.splitlines()]
    assert as_json and {row["job"] for row in as_json} == {job_id} and any("rendered" in r["line"] for r in as_json)


def test_pause_kill_and_resume(llama_model: Path, chat_data, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    spec = FineTuneSpec.model_validate(spec_dict(llama_model, chat_data, save_steps=2))
    job = api.submit(spec, "local", store=store)
    wait_for(job, {JobStatus.RUNNING})
    assert job.pause().status is JobStatus.RUNNING  # "pausing": honoured at the next step
    assert wait_for(job, {JobStatus.PAUSED, JobStatus.SUCCEEDED}).status is JobStatus.PAUSED
    paused_at = max(c.step for c in job.checkpoints())
    job.resume()
    run = job.client._run(job.remote_id)
    deadline = time.monotonic() + 120
    while (run.read_status() or {}).get(
        "phase"
    ) != "training" or run.latest_checkpoint().name == f"step-{paused_at:06d}":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job.client.kill(job.remote_id)  # what the OOM killer does
    died = wait_for(job, {JobStatus.FAILED, JobStatus.SUCCEEDED})
    assert died.status is JobStatus.FAILED and died.error and "fth resume" in died.error
    job.resume()
    assert wait_for(job, {JobStatus.SUCCEEDED, JobStatus.FAILED}).status is JobStatus.SUCCEEDED
    resumed = [e.message for e in job.events() if e.message.startswith("resumed from")]
    assert len(resumed) == 2, resumed
    steps = [h["step"] for h in job.result().history]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # every step once, in order, across three processes


def test_cancel_stops_the_run_cleanly(llama_model: Path, chat_data, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = api.submit(FineTuneSpec.model_validate(spec_dict(llama_model, chat_data)), "local", store=store)
    assert job.cancel().status is JobStatus.CANCELLING
    assert wait_for(job, {JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED}).status is JobStatus.CANCELLED
    assert store.get(job.local_id or "").status is JobStatus.CANCELLED
    assert job.cancel().status is JobStatus.CANCELLED  # idempotent


def test_bad_data_starts_nothing(llama_model: Path, chat_data, tmp_path: Path, fth_home: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**spec_dict(llama_model, chat_data), "data": {"train": str(bad)}}))
    done = fth("submit", str(spec), "--provider", "local", home=fth_home)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "bad.jsonl" in done.stdout + done.stderr
    assert not (fth_home / "local" / "runs").exists()


def test_a_failed_submit_neither_blocks_status_nor_stays_forever(
    llama_model: Path, chat_data, tmp_path: Path, fth_home: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(llama_model, chat_data, python="/nonexistent/[bold]python")))
    assert fth("submit", str(spec), "--provider", "local", home=fth_home).returncode != 0
    (record,) = JobStore(fth_home / "jobs.db").list_jobs()
    assert record.remote_id is None and record.status is JobStatus.CREATED
    status = fth("status", home=fth_home)  # every unfinished job, this one included, without asking anyone
    assert status.returncode == 0 and record.id in status.stdout and "[bold]python" in status.stdout, status.stderr
    waited = fth("wait", record.id, home=fth_home)
    assert waited.returncode == 2 and "no answer from the platform" in " ".join(waited.stderr.split())
    cleared = fth("cancel", record.id, home=fth_home)
    assert cleared.returncode == 0 and "cancelled" in cleared.stdout
    assert record.id not in fth("status", home=fth_home).stdout


def test_spec_maps_onto_the_trainer_config(
    llama_model: Path, chat_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = spec_dict(llama_model, chat_data, packed_length=4096, trainer={"loss_chunk_size": 512})
    raw["hyperparameters"] = {"epochs": 2, "learning_rate_multiplier": 0.5, "batch_size": 3, "max_seq_length": 1024}
    raw["lora"] = {"rank": 32, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"], "quantize": "none"}
    cfg = LocalJob(FineTuneSpec.model_validate(raw)).train_config({"train": "t.jsonl"}, "out")
    assert (cfg.epochs, cfg.learning_rate, cfg.batch_size, cfg.max_seq_length) == (2, 1e-4, 3, 1024)
    assert (cfg.lora_rank, cfg.alpha, cfg.lora_dropout, cfg.target_modules) == (32, 16, 0.0, ["q_proj"])
    assert (cfg.tokens_per_batch, cfg.loss_chunk_size, cfg.seed, cfg.save_steps) == (4096, 512, 3, 4)
    with pytest.raises(ConfigError, match="did you mean epochs"):
        LocalJob(FineTuneSpec.model_validate(spec_dict(llama_model, chat_data, trainer={"epoch": 1}))).train_config(
            {"train": "t"}
        )
    # a template file travels as its text: the trainer runs in the run folder, where a relative path means nothing
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with_file = spec_dict(llama_model, chat_data, trainer={"chat_template": str(template)})
    assert LocalJob(FineTuneSpec.model_validate(with_file)).train_config({"train": "t"}).chat_template == (
        template.read_text()
    )
    with pytest.raises(ConfigError, match="no template file"):
        missing = spec_dict(llama_model, chat_data, trainer={"chat_template": str(tmp_path / "nope.jinja")})
        LocalJob(FineTuneSpec.model_validate(missing)).train_config({"train": "t"})
    # written relative in a spec file, it is found beside the spec, from any working directory
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_dict(llama_model, chat_data, trainer={"chat_template": "chat.jinja"})))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert LocalJob(FineTuneSpec.load(spec_file)).train_config({"train": "t"}).chat_template == template.read_text()


def test_check_reports_what_cannot_run(llama_model: Path, chat_data) -> None:
    dpo = LocalJob(FineTuneSpec.model_validate({**spec_dict(llama_model, chat_data), "method": "dpo"})).check()
    assert any(p.severity == "error" and "supervised" in p.message for p in dpo)
    hub = LocalJob(
        FineTuneSpec.model_validate({**spec_dict(llama_model, chat_data), "base_model": "Qwen/Qwen2.5-0.5B"})
    )
    assert [p.severity for p in hub.check()] == ["warning"]
    gone = {**spec_dict(llama_model, chat_data), "base_model": str(llama_model.parent / "no-such-model")}
    assert [
        (p.severity, "does not exist" in p.message) for p in LocalJob(FineTuneSpec.model_validate(gone)).check()
    ] == [("error", True)]  # a path, not a Hub id: it would fail in the trainer, after the submit said all was well
    bad = spec_dict(llama_model, chat_data, trainer={"lr_scheduler": "triangle"})
    assert any("lr_scheduler" in p.message for p in LocalJob(FineTuneSpec.model_validate(bad)).check())
    if not importlib.util.find_spec("flash_attn"):  # (no flash-attn-4 then) said at submit, not at the trainer's start
        fa4 = spec_dict(llama_model, chat_data, trainer={"attention": "fa4"})
        assert any("needs flash-attn-4" in p.message for p in LocalJob(FineTuneSpec.model_validate(fa4)).check())


def test_preference_pairs_under_sft_are_refused_before_anything_starts(
    llama_model: Path, chat_data, tmp_path: Path
) -> None:
    pairs = write_dpo_jsonl(tmp_path / "pairs.jsonl", 12)
    spec = FineTuneSpec.model_validate({**spec_dict(llama_model, chat_data), "data": {"train": str(pairs)}})
    with pytest.raises(ConfigError, match="holds preference pairs; method is sft") as refused:
        api.submit(spec, "local", store=JobStore(tmp_path / "jobs.db"))
    assert "local has no preference tuning" in refused.value.message  # not "set method: dpo", which local refuses


def test_quickstart_specs_are_valid(tmp_path: Path) -> None:
    quickstart = ROOT / "examples" / "quickstart"
    for name in ("spec.yaml", "spec-hub.yaml"):
        shutil.copytree(quickstart, tmp_path / name, ignore=shutil.ignore_patterns("demo-model"))
        (tmp_path / name / "demo-model").mkdir()  # what `python -m local_backend.demo_model` makes first
        spec = FineTuneSpec.load(tmp_path / name / name)
        problems = LocalJob(spec).check()
        assert [p for p in problems if p.severity == "error"] == [], name
        assert spec.data.train.exists() and spec.data.validation and spec.data.validation.exists()
    # the demo model is found beside the spec, from any working directory
    demo = (quickstart / "demo-model").resolve()
    assert FineTuneSpec.load(quickstart / "spec.yaml").base_model_for("local") == str(demo)


def test_the_provider_imports_no_torch() -> None:
    code = (
        "import sys, providers.local; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("split", [None, 0.25])
def test_any_dataset_format_is_converted_for_the_trainer(
    llama_model: Path, tmp_path: Path, split: float | None
) -> None:
    """Alpaca records reach the trainer as chat JSONL, with or without a validation split carved out."""
    rows = [{"instruction": f"Reverse: {i} {i + 1}", "input": "", "output": f"{i + 1} {i}"} for i in range(20)]
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    raw = spec_dict(llama_model, (alpaca, alpaca))
    raw["data"] = {"train": str(alpaca), "format": "alpaca"} | ({"validation_split": split} if split else {})
    job = LocalJob(FineTuneSpec.model_validate(raw), store=JobStore(tmp_path / "jobs.db"))
    prepared = job.prepare()
    lines = {role: Path(ref).read_text(encoding="utf-8").splitlines() for role, ref in prepared.files.items()}
    assert {role: len(v) for role, v in lines.items()} == ({"train": 15, "validation": 5} if split else {"train": 20})
    first = json.loads(lines["train"][0])["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert job.prepare().files == prepared.files  # the split and the conversion are stable
