"""The CLI as a user runs it: real subprocesses, exit codes, and what it imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "openai",
    "boto3",
    "botocore",
    "google.genai",
    "google.cloud",
    "azure",
    "torch",
    "transformers",
    "peft",
    "sagemaker",
    "tiktoken",
    "pyarrow",
    "pydantic",
)


def fth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "finetune_hub", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "finetune_hub", *args], capture_output=True, text=True, timeout=120
    )
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("--help",), ("list",), ("submit", "--help")])
def test_startup_imports_no_sdk_torch_or_transformers(args: tuple[str, ...]) -> None:
    modules = imported_modules(*args)
    assert "finetune_hub.cli" in modules
    allowed_heavy = {"pydantic"} if args == ("list",) else set()
    loaded = {m for m in modules for h in HEAVY if (m == h or m.startswith(h + ".")) and h not in allowed_heavy}
    assert loaded == set()


def test_help_lists_every_command() -> None:
    out = fth("--help")
    assert out.returncode == 0
    for command in ("providers", "submit", "status", "list", "logs", "wait", "cancel"):
        assert command in out.stdout


def test_list_on_an_empty_store_as_json() -> None:
    out = fth("list", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("list", "--status", "Succeeded"), "no status 'Succeeded'"),
        (("list", "--provider", "nope"), "unknown provider 'nope'"),
        (("list", "--limit", "-5"), "must be at least 1"),
        (("wait", "fth-x", "--interval", "-1"), "must be above 0"),
        (("wait", "fth-x", "--interval", "0"), "must be above 0"),
        (("wait", "fth-x", "--timeout", "nan"), "must be above 0"),
        (("compare", "fth-x", "--metric", "exact"), "they need --eval FILE"),
    ],
)
def test_bad_filters_and_durations_exit_2(args: tuple[str, ...], expected: str) -> None:
    out = fth(*args)
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr


def test_a_reader_that_stops_early_is_no_error() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "finetune_hub", "providers", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head -0` would, before fth writes
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


BASE = "name: x\nbase_model: {openai: gpt-4.1-mini-2025-04-14}\ndata: {train: train.jsonl}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "hyperparameters: {epoch: 3}\n", "hyperparameters.epoch: unknown key; did you mean 'epochs'?"),
        (BASE + "hyperparameters: {epochs: lots}\n", "hyperparameters.epochs"),
        ("name: x\ndata: {train: train.jsonl}\n", "base_model: required key is missing"),
        ("name: [oops\n", "not valid YAML"),
        (BASE + "providers: {opnai: {seed: 1}}\n", "providers.opnai: unknown provider 'opnai'; did you mean"),
        (BASE + "hyperparameters: {epochs: 2}\nhyperparameters: {epochs: 3}\n", "'hyperparameters' is given twice"),
    ],
)  # fmt: skip
def test_spec_errors_exit_2_with_one_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    out = fth("submit", "--provider", "openai", str(spec_file(tmp_path, text)))
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_a_binary_spec_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\x00\xff\xfe binary \x80\x81")
    out = fth("submit", "-p", "openai", str(path), "--dry-run")
    assert out.returncode == 2, out.stderr
    assert "not UTF-8" in out.stderr and "Traceback" not in out.stderr


def test_missing_base_model_for_the_chosen_platform_exits_2(tmp_path: Path) -> None:
    from finetune_hub import registry

    if not registry.BUILTIN:
        pytest.skip("no adapter registered yet")
    provider = next(p for p in sorted(registry.BUILTIN) if p != "openai")
    out = fth("submit", "--provider", provider, "--dry-run", str(spec_file(tmp_path, BASE)))
    assert out.returncode == 2
    assert f"no model for provider '{provider}'" in out.stderr


def test_unknown_provider_exits_2_and_lists_known(tmp_path: Path) -> None:
    out = fth("submit", "--provider", "nope", str(spec_file(tmp_path, BASE)))
    assert out.returncode == 2 and "unknown provider 'nope'" in out.stderr and "known providers" in out.stderr


def test_errors_as_json_for_scripts(tmp_path: Path) -> None:
    out = fth("status", "fth-doesnotexist", "--json")
    assert out.returncode == 2
    assert json.loads(out.stderr)["error"] == "ConfigError"


def test_dry_run_prints_the_estimate_in_millions_of_tokens(tmp_path: Path) -> None:
    examples = [
        {
            "messages": [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": f"Capital of country number {i}?"},
                {"role": "assistant", "content": "Paris"},
            ]
        }
        for i in range(12)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    spec = str(spec_file(tmp_path, BASE))
    out = fth("submit", "--provider", "openai", "--dry-run", spec, env={"FTH_OFFLINE": "1", "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert re.search(r"estimated \$0\.\d+ \(0\.\d{3}M tokens × \$\d+\.\d\d/1M tokens, prices as of", out.stdout)


def test_the_cli_offers_every_conversion_target() -> None:
    from finetune_hub.cli.data import _TARGETS
    from finetune_hub.data.exporters import TARGETS

    assert _TARGETS == TARGETS  # the CLI keeps its own copy so that `fth --help` imports no data code


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """`fth prices | head -1`: the pipe closes before fth writes; rich's own handling would exit 1."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "finetune_hub", "prices"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "FTH_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it has written anything
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
