"""`compare` over store records made through the public JobStore API, the metrics, and the reports."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import report
from finetune_hub.compare import Answer, Comparison, Evaluation, compare, curves
from finetune_hub.errors import ConfigError, DataError
from finetune_hub.evaluation import load_prompts, scorer
from finetune_hub.records import JobResult, JobStatus
from finetune_hub.report.common import sparkline
from finetune_hub.report.svg import nice_ticks
from finetune_hub.store import JobStore
from tests.conftest import chat_example, exit_code


def finished_job(store: JobStore, provider: str, *, losses: list[float], actual: float | None, est: float) -> str:
    spec = {"name": f"{provider}-run", "base_model": "base-1B", "data": {"train": "/tmp/t.jsonl"}}
    record = store.create_job(
        provider=provider, name=spec["name"], spec=spec, spec_hash="s", data_hash="d", estimated_usd=est
    )
    history = [{"step": i + 1, "train_loss": v, "valid_loss": v * 1.1} for i, v in enumerate(losses)]
    store.update(record.id, remote_id=f"{provider}-remote", status=JobStatus.QUEUED)
    store.update(record.id, status=JobStatus.RUNNING)
    result = JobResult(model=f"{provider}-tuned", metrics={"loss": losses[-1]}, history=history)
    store.update(record.id, status=JobStatus.SUCCEEDED, result=result, model=result.model, actual_usd=actual)
    return record.id


def test_summaries_come_from_the_store(tmp_path: Path) -> None:
    store = JobStore()
    a = finished_job(store, "openai", losses=[2.0, 1.0, 0.5], actual=1.2, est=1.0)
    b = finished_job(store, "local", losses=[1.5, 0.9], actual=0.0, est=0.0)
    failed = store.create_job(
        provider="vertex",
        name="v",
        spec={"name": "v", "base_model": {"vertex": "g"}, "data": {"train": "/x"}},
        spec_hash="s",
        data_hash="d",
    )
    store.update(failed.id, status=JobStatus.FAILED, error="quota exhausted")
    found = compare([a, b, failed.id, a], store=store)
    assert [j.id for j in found.jobs] == [a, b, failed.id]  # duplicates dropped, order kept
    first = found.jobs[0]
    assert (first.provider, first.base_model, first.status, first.model) == (
        "openai",
        "base-1B",
        "succeeded",
        "openai-tuned",
    )
    assert first.final == {"train_loss": 0.5, "valid_loss": pytest.approx(0.55)}
    assert first.curves["train_loss"] == [(1.0, 2.0), (2.0, 1.0), (3.0, 0.5)]
    assert first.wall_seconds is not None and first.wall_seconds >= 0
    assert (first.estimated_usd, first.actual_usd) == (1.0, 1.2)
    assert found.jobs[2].error == "quota exhausted" and found.jobs[2].final == {}


def test_curves_accept_each_platforms_names() -> None:
    rows = [{"global_step": 10, "loss": 1.0}, {"global_step": 20, "eval_loss": 0.9}, {"train_loss": 0.7}]
    assert curves(rows) == {"train_loss": [(3.0, 0.7), (10.0, 1.0)], "valid_loss": [(20.0, 0.9)]}


@pytest.mark.parametrize(
    "metric, prediction, reference, expected",
    [
        ("exact", " Paris\n", "Paris", 1.0),
        ("exact", "paris", "Paris", 0.0),
        ("exact-ci", "the  CAPITAL is paris", "The capital is Paris", 1.0),
        ("json-valid", '{"a": 1}', "", 1.0),
        ("json-valid", "{a: 1}", "", 0.0),
        ("json-match", '{"b": 2, "a": 1}', '{"a": 1, "b": 2}', 1.0),
        ("json-match", '{"a": 2}', '{"a": 1}', 0.0),
        ("rouge-l", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("rouge-l", "completely different words", "the cat sat on the mat", 0.0),
    ],
)
def test_metrics(metric: str, prediction: str, reference: str, expected: float) -> None:
    assert scorer(metric)(prediction, reference) == pytest.approx(expected)


def test_rouge_l_rewards_partial_overlap() -> None:
    score = scorer("rouge-l")("the cat sat", "the cat sat on the mat")
    assert score == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 3/6


def test_unknown_metric_and_bad_held_out_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        scorer("bleu")
    bad = tmp_path / "held.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match=r"held.jsonl:1: no assistant message"):
        load_prompts(bad)
    bad.write_text("\n{not json\n")
    with pytest.raises(DataError, match=r"held.jsonl:2: not valid JSON"):
        load_prompts(bad)


def test_held_out_examples_may_come_in_any_format(tmp_path: Path) -> None:
    alpaca = tmp_path / "held.json"
    alpaca.write_text(json.dumps([{"instruction": "Capital of France?", "input": "", "output": "Paris"}]))
    (prompt,) = load_prompts(alpaca)
    assert prompt.messages == [{"role": "user", "content": "Capital of France?"}] and prompt.reference == "Paris"


def sample_comparison(store: JobStore) -> Comparison:
    a = finished_job(store, "openai", losses=[2.0, 1.2, 0.6, 0.4], actual=1.2, est=1.0)
    b = finished_job(store, "local", losses=[1.8, 1.0, 0.7], actual=0.0, est=0.0)
    base = compare([a, b], store=store)
    answers = [Answer(1, "Paris", {"exact": 1.0}), Answer(2, "<b>Rome</b>", {"exact": 0.0})]
    evaluations = [
        Evaluation(a, a, "openai", "openai-tuned", False, {"exact": 0.5}, 2, 0, answers),
        Evaluation(b, b, "local", "local-tuned", False, {"exact": 0.5}, 2, 0, answers),
        Evaluation("base base-1B", a, "openai", "base-1B", True, {}, 0, 2, error="404 model not found"),
    ]
    prompts = [
        {"line": 1, "prompt": "Capital of France?", "reference": "Paris"},
        {"line": 2, "prompt": "Capital of <Italy>?", "reference": "Rome"},
    ]
    return Comparison(base.created_at, base.jobs, ["exact"], "held.jsonl", prompts, evaluations)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_report_is_self_contained_with_charts(tmp_path: Path) -> None:
    comparison = sample_comparison(JobStore())
    path = report.write(comparison, tmp_path / "out" / "report.html")
    html = path.read_text()
    parser = _Tags()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    # nothing is fetched: no scripts, stylesheets, images, frames or CSS urls
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(tags)
    assert "url(" not in html and "@import" not in html
    assert not [a for t, a in parser.tags if a.get("src")]
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == 2  # loss curves, cost versus quality
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML
        assert root.tag.endswith("svg")
    loss = ET.fromstring(svgs[0])
    lines = loss.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4  # train + valid for two jobs
    assert sum(1 for line in lines if line.get("stroke-dasharray")) == 2
    dots = ET.fromstring(svgs[1]).findall(".//{http://www.w3.org/2000/svg}circle")
    assert len(dots) == 2  # the base model has no cost and no score
    assert "&lt;b&gt;Rome&lt;/b&gt;" in html and "<b>Rome</b>" not in html  # answers are escaped
    assert "cheapest within 0.01 of it" in html and "404 model not found" in html


def test_markdown_and_json_reports(tmp_path: Path) -> None:
    comparison = sample_comparison(JobStore())
    report.write(comparison, tmp_path)  # a folder gets all three
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("# finetune-hub comparison")
    table = [line for line in md.splitlines() if line.startswith("| fth-")]
    assert len(table) == 2 + 4 + 2  # jobs, loss curves (train and valid per job), fine-tuned evaluations
    assert "+$0.20, +20%" in md and "Capital of" not in md
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert [j["provider"] for j in data["jobs"]] == ["openai", "local"]
    assert data["jobs"][0]["curves"]["train_loss"][0] == [1.0, 2.0]
    assert data["evaluations"][0]["answers"][1]["prediction"] == "<b>Rome</b>"
    assert (tmp_path / "comparison.html").exists()
    with pytest.raises(ConfigError, match="suffix"):
        report.write(comparison, tmp_path / "report.pdf")


def test_chart_helpers() -> None:
    assert nice_ticks(0.13, 1.97) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert nice_ticks(5, 5)[0] <= 5 <= nice_ticks(5, 5)[-1]
    assert sparkline([3, 2, 1]) == "█▅▁"
    assert len(sparkline(list(range(100)), width=10)) == 10


def test_cli_compare_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from finetune_hub.cli import main

    store = JobStore()
    a = finished_job(store, "openai", losses=[2.0, 1.0], actual=1.2, est=1.0)
    out = tmp_path / "r.md"
    assert main(["compare", a, "--report", str(out), "--report", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert a in printed and "report written" in printed
    assert a in out.read_text() and json.loads((tmp_path / "r.json").read_text())["jobs"][0]["id"] == a
    assert main(["compare", "fth-nope"]) == 2


def test_cli_compare_without_eval_needs_no_metric_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune_hub.cli import main

    monkeypatch.setitem(sys.modules, "rouge_score", None)  # not installed: importing it fails
    job = finished_job(JobStore(), "openai", losses=[2.0, 1.0], actual=1.2, est=1.0)
    assert main(["compare", job]) == 0


def test_cli_list_keeps_ids_whole_in_an_80_column_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_hub.cli import main

    store = JobStore()
    ids = [finished_job(store, p, losses=[1.0], actual=1.2, est=1.0) for p in ("openai", "azure_openai")]
    store.update(ids[0], model="ft:[/]tuned")  # shown as written, never read as markup
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80
    for value in (*ids, "azure_openai", "openai-tuned", "+$0.20, +20%", "ft:[/]tuned"):
        assert value in table, value


def _evaluated(store: JobStore, costs: list[tuple[float | None, float | None]], score: float) -> Comparison:
    """A comparison of one fine-tuned job per (estimated, actual) cost, each scoring `score` on exact."""
    ids = []
    for est, actual in costs:
        record = store.create_job(
            provider="openai", name="n", spec={"name": "n"}, spec_hash="s", data_hash="d", estimated_usd=est
        )
        store.update(record.id, status=JobStatus.SUCCEEDED, model="tuned", actual_usd=actual)
        ids.append(record.id)
    base = compare(ids, store=store)
    evaluations = [Evaluation(i, i, "openai", "tuned", False, {"exact": score}, 10, 0) for i in ids]
    return Comparison(base.created_at, base.jobs, ["exact"], "held.jsonl", [], evaluations)


def test_a_job_of_unknown_cost_is_never_called_cheapest() -> None:
    from finetune_hub.report.common import best

    store = JobStore()
    for order in ([(12.5, None), (None, None)], [(None, None), (12.5, None)]):
        comparison = _evaluated(store, order, 0.9)
        known = next(j.id for j in comparison.jobs if j.estimated_usd is not None)
        verdict = best(comparison)
        assert verdict is not None
        assert f"cheapest within 0.01 of it: {known} on openai ($12.50" in verdict, verdict
        assert "1 more of unknown cost" in verdict
    verdict = best(_evaluated(store, [(None, None), (None, None)], 0.9))
    assert verdict is not None and "cheapest" not in verdict and "no job within 0.01 of it has a known cost" in verdict
    verdict = best(_evaluated(store, [(5.0, 2.0), (1.0, None)], 0.9))  # actual where known, else the estimate
    assert verdict is not None and "($1.00" in verdict and "unknown" not in verdict


def test_the_prompt_limit_is_honoured_and_must_be_positive(tmp_path: Path) -> None:
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(chat_example(i)) + "\n" for i in range(5)) + "{not json\n")
    assert [p.line for p in load_prompts(held, 2)] == [1, 2]  # the bad line 6 is never read
    assert len(load_prompts(held, 5)) == 5
    for limit in (0, -3):
        with pytest.raises(ConfigError, match="at least 1"):
            load_prompts(held, limit)


def _no_compare(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make `compare` record that it was called (it is where models are asked) instead of running."""
    calls: list[object] = []

    def fake(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("compare ran")

    monkeypatch.setattr("finetune_hub.compare.compare", fake)
    return calls


@pytest.mark.parametrize(
    "options",
    [["--report", "out.txt"], ["--report", "ok.md", "--report", "out"], ["--limit", "0"], ["--limit", "-1"]],
    ids=["txt-suffix", "no-suffix", "limit-0", "limit-negative"],
)
def test_cli_compare_checks_its_options_before_asking_any_model(
    options: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps(chat_example(1)) + "\n")
    calls = _no_compare(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert exit_code(["compare", "fth-any", "--eval", str(held), *options]) == 2
    assert calls == []
    err = capsys.readouterr().err
    assert ("suffix" in err) if "--report" in options else ("at least 1" in err)
    assert not list(tmp_path.glob("ok.md*"))  # no report half-written either


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_turns_nan_and_infinite_losses_into_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_hub.cli import main

    store = JobStore()
    job = finished_job(store, "openai", losses=[2.0, float("inf"), float("nan")], actual=1.2, est=1.0)
    assert main(["list", "--json"]) == 0
    (listed,) = _strict_json(capsys.readouterr().out)
    assert listed["result"]["metrics"]["loss"] is None
    assert main(["compare", job, "--json", "--report", str(tmp_path / "r.json")]) == 0
    shown = _strict_json(capsys.readouterr().out)
    assert shown["jobs"][0]["final"]["train_loss"] is None
    assert [v for _, v in shown["jobs"][0]["curves"]["train_loss"]] == [2.0, None, None]
    assert _strict_json((tmp_path / "r.json").read_text()) == shown


def test_table_and_reports_survive_nan_and_infinite_losses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from finetune_hub.cli import main

    job = finished_job(JobStore(), "openai", losses=[2.0, float("inf"), 1.0, float("nan")], actual=1.2, est=1.0)
    assert main(["compare", job, "--report", str(tmp_path)]) == 0
    assert job in capsys.readouterr().out
    html = (tmp_path / "comparison.html").read_text()
    (loss_chart, *_) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert "nan" not in loss_chart.lower() and "inf" not in loss_chart.lower()
    assert sparkline([2.0, float("inf"), 1.0, float("nan")]) == "█▁"


def test_answers_a_json_parser_refuses_score_zero_instead_of_crashing() -> None:
    for answer in ("1" * 5000, "[" * 100_000):  # past Python's digit limit; deeper than its recursion limit
        assert scorer("json-valid")(answer, '{"a": 1}') == 0.0


def test_held_out_examples_without_a_question_are_refused_and_training_fields_dropped(tmp_path: Path) -> None:
    held = tmp_path / "held.jsonl"
    held.write_text(
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "hi"}]}\n'
    )
    with pytest.raises(DataError, match=r"held.jsonl:1: no user message before the reference answer"):
        load_prompts(held)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 0},
             {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]  # fmt: skip
    held.write_text(json.dumps({"messages": turns}) + "\n")
    [prompt] = load_prompts(held)
    assert all("weight" not in m for m in prompt.messages)  # a chat API refuses a training-only field


def test_a_loss_at_step_0_is_drawn_at_step_0() -> None:
    assert curves([{"step": 0, "val_loss": 2.0}, {"step": 5, "loss": 1.0}])["valid_loss"] == [(0.0, 2.0)]


def test_two_base_models_of_one_name_keep_their_own_answers(tmp_path: Path) -> None:
    comparison = sample_comparison(JobStore(tmp_path / "jobs.db"))
    ours, theirs = [Answer(1, "from openai", {}), Answer(2, "x", {})], [Answer(1, "from azure", {}), Answer(2, "y", {})]
    twins = [
        Evaluation("base m", "a", "openai", "m", True, {"exact": 0.5}, 2, 0, ours),
        Evaluation("base m", "b", "azure_openai", "m", True, {"exact": 0.5}, 2, 0, theirs),
    ]
    page = report.render(replace(comparison, evaluations=twins), "HTML")
    assert "from openai" in page and "from azure" in page  # the second no longer overwrote the first
    assert "base m (openai)" in page and "base m (azure_openai)" in page


def test_a_report_that_cannot_be_written_is_refused_before_any_model_is_asked(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        report.format_of(blocker / "r.html")
    assert report.format_of(str(tmp_path / "new" / "r.html")) == "HTML"  # a folder still to make is fine


def test_a_model_that_left_prompts_unanswered_is_not_crowned(tmp_path: Path) -> None:
    from finetune_hub.report.common import best

    comparison = _evaluated(JobStore(tmp_path / "jobs.db"), [(1.0, None), (2.0, None)], 0.6)
    full, partial = comparison.evaluations
    partial = replace(partial, scores={"exact": 1.0}, answered=1, failed=2)  # its one answer was right
    verdict = best(replace(comparison, evaluations=[full, partial]))
    assert verdict is not None and f"{full.label} on openai" in verdict and "1 left out" in verdict, verdict


def test_the_terminal_table_shows_an_eval_path_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_hub.cli.output import console
    from finetune_hub.report.table import show

    monkeypatch.setenv("COLUMNS", "200")
    comparison = replace(sample_comparison(JobStore(tmp_path / "jobs.db")), eval_file="runs [v2]/held[/].jsonl")
    show(comparison, console())  # rich read "[/]" as markup: a MarkupError after the paid answers
    assert "runs [v2]/held[/].jsonl" in capsys.readouterr().out


def test_a_validation_curve_only_the_events_carry_is_still_drawn(tmp_path: Path) -> None:
    from finetune_hub.compare import summarize
    from finetune_hub.records import JobEvent, utcnow

    store = JobStore(tmp_path / "jobs.db")
    job_id = finished_job(store, "local", losses=[2.0, 1.0], actual=0.0, est=0.0)
    record = store.get(job_id)
    train_only = [{"step": row["step"], "train_loss": row["train_loss"]} for row in record.result["history"]]
    store.update(job_id, result={**record.result, "history": train_only})  # as the local trainer records it
    points = [JobEvent(utcnow(), f"eval {s}", kind="metrics", data={"step": s, "val_loss": v}, id=f"e{s}")
              for s, v in ((0, 2.5), (2, 1.4))]  # fmt: skip
    store.add_events(job_id, points)
    found = summarize(store.get(job_id), store).curves
    assert found["train_loss"] == [(1.0, 2.0), (2.0, 1.0)] and found["valid_loss"] == [(0.0, 2.5), (2.0, 1.4)]
