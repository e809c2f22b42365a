"""`fth validate`, `fth convert`, `fth stats`: output, exit codes, and a light import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_hub.cli import main
from tests.data.conftest import chat, write_lines


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "train.jsonl", [chat(i) for i in range(12)])


def test_validate_ok_exits_zero_and_says_what_it_read(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(dataset), "--for", "openai", "--for", "vertex"]) == 0
    out = capsys.readouterr().out
    assert "OpenAI chat JSONL" in out and "ok" in out and "openai, vertex" in out
    assert "platform.recommended_examples" in out  # Vertex wants more than 12: a warning, not an error


def test_validate_json_lists_counts_beyond_the_kept_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "d.jsonl", [{"messages": []}] * 30)
    assert main(["validate", str(path), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["missing_messages_list"] == 30 and report["errors"] == 30
    kept = [f for f in report["findings"] if f["rule"] == "missing_messages_list"]
    assert [f["line"] for f in kept if f["line"]] == list(range(1, 21))
    assert any(f["line"] is None and "10 more" in f["message"] for f in kept)


def test_findings_into_a_pipe_stay_one_line_each_for_grep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe has no width: rich used to fold at 80 columns
    folder = tmp_path / "a-rather-long-folder-name-for-the-datasets-of-the-support-team"
    folder.mkdir()
    path = write_lines(folder / "train.jsonl", [{"messages": []}] * 3)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    findings = [line for line in out if re.match(rf"{re.escape(str(path))}:\d+: ", line)]
    assert len(findings) == 5 and all(re.search(r": (error|warning) \w+ \S", line) for line in findings), out


def test_convert_writes_and_reports_changes(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vertex.jsonl"
    assert main(["convert", str(dataset), "--to", "vertex", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 12 and report["out"] == str(out)
    assert "vertex.role_renamed" in report["change_counts"]
    assert len(out.read_text().splitlines()) == 12


def test_convert_bad_data_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "d.jsonl", [chat(1), '{"messages": ['])
    out = tmp_path / "o.jsonl"
    assert main(["convert", str(path), "--to", "local", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "json.invalid" in captured.out and "nothing was written" in captured.err
    assert not out.exists()
    assert main(["convert", str(path), "--to", "local", "-o", str(out), "--json"]) == 2
    assert json.loads(capsys.readouterr().err)["error"] == "ConversionError"
    good = write_lines(tmp_path / "ok.jsonl", [chat(1)])
    assert main(["convert", str(good), "--to", "local", "-o", str(tmp_path)]) == 2
    assert "is a directory" in " ".join(capsys.readouterr().err.split())


def test_stats_refuses_a_negative_epoch_count(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["stats", str(dataset), "--for", "openai", "--epochs", "-3"])
    assert stopped.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_stats_json_with_billed_tokens(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(dataset), "--for", "openai", "--model", "gpt-4o-mini", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 12 and report["role_counts"]["assistant"] == 12
    assert report["tokens_per_example"]["max"] == report["max_tokens"]
    (billed,) = report["billed"]
    assert billed["epochs"] == 8 and billed["billed"] == 8 * report["tokens"]
    assert report["exact"] is False and "approximate" in report["counter"]


def test_stats_table(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "tokens per example" in out and "p90" in out and "assistant 12" in out


def test_missing_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["stats", str(tmp_path / "nope.jsonl")]) == 2


def test_cli_imports_no_heavy_module() -> None:
    code = (
        "import sys; from finetune_hub.cli import build_parser; build_parser(); import finetune_hub.cli.data; "
        "heavy = ('tiktoken', 'pyarrow', 'numpy', 'transformers', 'torch', 'datasets'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_scan_progress_shows_a_bar_only_for_a_person_and_a_big_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_hub.cli.output import scan_progress

    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    with open(big, "wb") as fh:
        fh.truncate(20 << 20)  # sparse: its size is all the bar reads
    small.write_text("{}\n")
    with scan_progress([str(big)], quiet=False) as progress:
        assert progress is None  # stderr is not a terminal here
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the stream as a terminal
    for paths, quiet in (([str(small), None], False), ([str(big)], True)):
        with scan_progress(paths, quiet=quiet) as progress:
            assert progress is None
    with scan_progress([str(big), None], quiet=False) as progress:
        assert progress is not None
        progress(10 << 20)
        progress(10 << 20)
    assert "21.0/21.0 MB" in capsys.readouterr().err  # 20 MiB, in the decimal units rich shows


def test_convert_to_a_path_under_a_file_is_bad_input(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(dataset.parent.iterdir())
    assert main(["convert", str(dataset), "--to", "openai", "-o", str(dataset / "out.jsonl")]) == 2
    assert f"{dataset} is a file, not a folder" in " ".join(capsys.readouterr().err.split())
    assert sorted(dataset.parent.iterdir()) == before  # nothing written, no temporary folder left


@pytest.mark.parametrize(
    ("name", "data", "rule", "line"),
    [
        ("u16.jsonl", json.dumps(chat(1)).encode("utf-16"), "encoding.utf16", 1),
        (
            "part.jsonl",
            json.dumps(chat(1)).encode() + b'\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
            "encoding.invalid_utf8",
            2,
        ),
        ("cut.jsonl", json.dumps(chat(1)).encode() + b'\n{"messages": [\n', "json.invalid", 2),
        ("t.csv", b"question,answer\nhi,hello\n", "format.column_missing", 1),
    ],
)
def test_stats_refuses_input_it_cannot_read_as_validate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, rule: str, line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    columns = ["--columns", "prompt=question,completion=reply"] if name.endswith(".csv") else []
    assert main(["validate", str(path), *columns]) == 2
    capsys.readouterr()
    assert main(["stats", str(path), *columns]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}:{line}: error [{rule}]" in err and "could not be read" in err


def test_every_rule_and_conversion_change_is_documented() -> None:
    from finetune_hub.data.exporters import CHANGES
    from finetune_hub.data.findings import RULES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    assert [name for name in [*RULES, *CHANGES] if f"| `{name}` |" not in doc] == []


def test_a_suffix_without_azure_is_refused_not_ignored(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(dataset), "--for", "openai", "--suffix", "v1.2"]) == 2
    assert "--for azure_openai" in capsys.readouterr().err
