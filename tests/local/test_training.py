"""The trainer end to end on tiny demo models (CPU): learning, equivalences, exact resume, adapter, merge."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from local_backend.config import ConfigError, TrainConfig
from local_backend.runfiles import RunFiles
from local_backend.train import train

ROOT = Path(__file__).resolve().parents[2]


def config(model: Path, data: tuple[Path, Path], out: Path, **overrides: Any) -> TrainConfig:
    train_file, valid_file = data
    values: dict[str, Any] = {
        "model": str(model), "train_file": str(train_file), "validation_file": str(valid_file),
        "output_dir": str(out), "epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "lora_rank": 8,
        "lora_dropout": 0.0, "warmup_ratio": 0.0, "seed": 7,
    }  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    """Equal adapters. Runs that sum the same gradients in another order need atol ~1e-4: Adam turns float
    noise in a near-zero gradient element into a full-size step (lr 1e-2) in either direction."""
    wa, wb = adapter_weights(a), adapter_weights(b)
    assert wa.keys() == wb.keys() and wa
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=1e-5, msg=key)


def losses(summary: dict[str, Any]) -> list[float]:
    return [h["loss"] for h in summary["history"]]


def test_loss_decreases_and_the_adapter_reloads(any_model: Path, chat_data, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from local_backend.data import load_examples

    summary = train(config(any_model, chat_data, tmp_path / "run", epochs=2, eval_steps=6))
    assert summary["status"] == "succeeded"
    assert summary["val_loss"] < 0.8 * summary["initial_val_loss"]
    first, last = losses(summary)[:3], losses(summary)[-3:]
    assert sum(last) < 0.8 * sum(first)
    events = RunFiles(tmp_path / "run").read_events()
    metrics = [e["data"] for e in events if e["kind"] == "metrics" and "loss" in e["data"]]
    assert metrics and all({"tokens_per_s", "eta_s", "lr", "step", "total_steps"} <= m.keys() for m in metrics)
    # The standard-format adapter reloads, and an independent loss (transformers' own) agrees with ours.
    adapter = Path(summary["adapter"])
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(any_model), adapter).eval()
    examples, _ = load_examples(chat_data[1], tokenizer, max_seq_length=2048)
    total = count = 0.0
    with torch.no_grad():
        for e in examples:
            out = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels]))
            n = sum(1 for t in e.labels[1:] if t != -100)
            total, count = total + float(out.loss) * n, count + n
    assert total / count == pytest.approx(summary["val_loss"], rel=1e-4)


def test_packed_and_padded_batches_train_identically(llama_model: Path, chat_data, tmp_path: Path) -> None:
    packed = train(config(llama_model, chat_data, tmp_path / "packed", max_steps=4, packing=True))
    padded = train(config(llama_model, chat_data, tmp_path / "padded", max_steps=4, packing=False))
    assert losses(packed) == pytest.approx(losses(padded), rel=1e-5)
    assert_same_weights(Path(packed["adapter"]), Path(padded["adapter"]), atol=1e-4)


def test_fused_lora_trains_like_peft(llama_model: Path, chat_data, tmp_path: Path) -> None:
    fused = train(config(llama_model, chat_data, tmp_path / "fused", max_steps=4, fused_lora=True))
    plain = train(config(llama_model, chat_data, tmp_path / "plain", max_steps=4, fused_lora=False))
    assert fused["fused_lora_layers"] == 14 and plain["fused_lora_layers"] == 0
    assert losses(fused) == pytest.approx(losses(plain), rel=1e-5)
    assert_same_weights(Path(fused["adapter"]), Path(plain["adapter"]), atol=1e-4)


def test_gradient_accumulation_normalises_by_supervised_tokens(llama_model: Path, chat_data, tmp_path: Path) -> None:
    # Same 8 examples per optimizer step, split into micro-batches of very different token counts.
    whole = train(config(llama_model, chat_data, tmp_path / "whole", max_steps=3, batch_size=8))
    split = train(config(llama_model, chat_data, tmp_path / "split", max_steps=3, batch_size=2, grad_accumulation=4))
    assert losses(whole) == pytest.approx(losses(split), rel=1e-5)
    assert_same_weights(Path(whole["adapter"]), Path(split["adapter"]), atol=1e-4)


def test_log_lines_are_read_a_step_late_but_stay_in_order(llama_model: Path, chat_data, tmp_path: Path) -> None:
    # A log line's values are read during the next step; a validation, a checkpoint or the end reads it at once.
    settings = {"max_steps": 7, "batch_size": 2, "logging_steps": 2, "eval_steps": 3, "save_steps": 4}
    summary = train(config(llama_model, chat_data, tmp_path / "run", **settings))
    run = RunFiles(tmp_path / "run")
    order = [
        ("loss" if "loss" in e["data"] else "val" if e["kind"] == "metrics" else "checkpoint", e["data"]["step"])
        for e in run.read_events()
        if e["kind"] in ("metrics", "checkpoint")
    ]
    assert order == [("val", 0), ("loss", 2), ("val", 3), ("loss", 4), ("checkpoint", 4), ("loss", 6), ("val", 6),
                     ("loss", 7), ("val", 7), ("checkpoint", 7)]  # fmt: skip
    assert [h["step"] for h in summary["history"]] == [2, 4, 6, 7]
    assert sum(h["tokens"] for h in summary["history"]) == summary["trained_tokens"] > 0
    assert json.loads((run.checkpoints / "step-000004" / "meta.json").read_text())["metrics"]["step"] == 4


def test_a_pause_between_log_lines_keeps_every_token(llama_model: Path, chat_data, tmp_path: Path) -> None:
    settings = {"max_steps": 4, "batch_size": 2, "logging_steps": 2, "save_steps": 100}
    straight = train(config(llama_model, chat_data, tmp_path / "straight", **settings))
    run = RunFiles(tmp_path / "paused")
    run.root.mkdir(parents=True)
    run.control.write_text(json.dumps({"request": "pause"}))  # honoured after step 1, which is no log step
    paused = train(config(llama_model, chat_data, run.root, **settings))
    assert paused["status"] == "paused" and [h["step"] for h in paused["history"]] == [1]
    run.control.unlink()
    resumed = train(config(llama_model, chat_data, run.root, **settings))
    assert [h["step"] for h in resumed["history"]] == [1, 2, 4]
    assert resumed["trained_tokens"] == straight["trained_tokens"]


def test_step_times_are_laps_between_the_steps_themselves(llama_model: Path, chat_data, tmp_path: Path) -> None:
    # Lines are read a step late, but the last one at once: each is timed from its own step, not from its read.
    summary = train(config(llama_model, chat_data, tmp_path / "run", max_steps=7, batch_size=2))
    seconds = [h["seconds"] for h in summary["history"]][1:]  # the first step includes the warm-up
    assert seconds[-1] > 0.25 * statistics.median(seconds), seconds


def test_a_crash_still_logs_the_last_good_step(
    llama_model: Path, chat_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step, calls = torch.optim.AdamW.step, []

    def step_then_fail(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory (injected)")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        train(config(llama_model, chat_data, tmp_path / "run", max_steps=5, batch_size=2))
    events = RunFiles(tmp_path / "run").read_events()
    assert [e["data"]["step"] for e in events if e["kind"] == "metrics" and "loss" in e["data"]] == [1, 2]


def test_a_stop_asked_on_the_last_step_lets_the_run_succeed(llama_model: Path, chat_data, tmp_path: Path) -> None:
    run = RunFiles(tmp_path / "run")
    run.root.mkdir(parents=True)
    run.control.write_text(json.dumps({"request": "cancel"}))  # seen after step 1, the last: training is complete
    summary = train(config(llama_model, chat_data, run.root, max_steps=1))
    assert summary["status"] == "succeeded" and Path(summary["adapter"]).is_dir()


def test_pause_then_resume_continues_exactly(llama_model: Path, chat_data, tmp_path: Path) -> None:
    settings = {"max_steps": 6, "lora_dropout": 0.1, "save_steps": 100}  # dropout: the RNG must be restored too
    straight = train(config(llama_model, chat_data, tmp_path / "straight", **settings))
    run = RunFiles(tmp_path / "paused")
    run.root.mkdir(parents=True)
    run.control.write_text(json.dumps({"request": "pause"}))  # honoured after the first step
    paused = train(config(llama_model, chat_data, run.root, **settings))
    assert paused["status"] == "paused" and paused["step"] == 1 and run.latest_checkpoint() is not None
    run.control.unlink()
    resumed = train(config(llama_model, chat_data, run.root, **settings))
    assert resumed["status"] == "succeeded" and losses(resumed) == pytest.approx(losses(straight), rel=1e-6)
    assert_same_weights(Path(resumed["adapter"]), Path(straight["adapter"]))
    # the run's time is both processes' (what `billable_seconds` reports), and the status says it too
    assert resumed["runtime_s"] >= paused["runtime_s"] + resumed["train_seconds"]
    assert (run.read_status() or {})["runtime_s"] == pytest.approx(resumed["runtime_s"], abs=0.5)
    # A checkpoint made with other batching, other settings or other data cannot silently be continued.
    other = tmp_path / "other.jsonl"
    lines = chat_data[0].read_text().splitlines()
    other.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")  # the same examples, another order
    for changed in ({"batch_size": 3}, {"learning_rate": 5e-3}, {"train_file": str(other)}):
        with pytest.raises(ConfigError, match="other data or training settings"):
            train(config(llama_model, chat_data, run.root, **{**settings, **changed}))
    # and a fresh start in the same folder would mix its checkpoints with the old ones: refused, nothing touched
    before = (run.config.read_text(), run.status.read_text())
    with pytest.raises(ConfigError, match="resume = 'never', but"):
        train(config(llama_model, chat_data, run.root, **{**settings, "resume": "never"}))
    assert (run.config.read_text(), run.status.read_text()) == before


def paused_after_one_step(cfg: TrainConfig) -> Path:
    """Run `cfg` until a pause asked before it started (after step 1); its checkpoint."""
    run = RunFiles(cfg.output_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    run.control.write_text(json.dumps({"request": "pause"}))
    train(cfg)
    run.control.unlink()
    saved = run.latest_checkpoint()
    assert saved is not None
    return saved


def test_a_checkpoint_from_before_the_data_check_still_resumes(llama_model: Path, chat_data, tmp_path: Path) -> None:
    from local_backend.data import load_examples
    from local_backend.loop import plan_steps
    from local_backend.model import load_tokenizer

    cfg = config(llama_model, chat_data, tmp_path / "run", max_steps=4, save_steps=100)
    saved = paused_after_one_step(cfg)
    # earlier versions hashed the step plan alone
    examples, _ = load_examples(cfg.train_file, load_tokenizer(cfg), max_seq_length=cfg.max_seq_length)
    state = torch.load(saved / "trainer_state.pt", weights_only=False)
    plan = plan_steps([len(e) for e in examples], cfg, world=1)
    state["fingerprint"] = hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:16]
    # and kept the optimizer state by position, as `optimizer.state_dict()` does
    names = state["optimizer"]["param_groups"][0]["params"]
    state["optimizer"] = {
        "state": {names.index(k): v for k, v in state["optimizer"]["state"].items()},
        "param_groups": [
            {**g, "params": [names.index(n) for n in g["params"]]} for g in state["optimizer"]["param_groups"]
        ],
    }
    torch.save(state, saved / "trainer_state.pt")
    # and PEFT's own save held frozen embedding weights when LoRA targeted embed_tokens
    from safetensors.torch import save_file

    weights = adapter_weights(saved)
    save_file({**weights, "base_model.model.model.embed_tokens.base_layer.weight": torch.zeros(3, 2)},
              str(saved / "adapter_model.safetensors"))  # fmt: skip
    resumed = train(cfg)
    assert resumed["status"] == "succeeded"
    assert any("earlier version" in e["message"] for e in RunFiles(cfg.output_dir).read_events())
    straight = train(config(llama_model, chat_data, tmp_path / "straight", max_steps=4))
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6)


def test_a_checkpoint_where_a_parameter_has_no_optimizer_state_resumes(
    llama_model: Path, chat_data, tmp_path: Path
) -> None:
    """A LoRA weight that never had a gradient (an MoE expert no token reached yet) has no Adam state."""
    cfg = config(llama_model, chat_data, tmp_path / "run", max_steps=3, save_steps=100)
    saved = paused_after_one_step(cfg)
    state = torch.load(saved / "trainer_state.pt", weights_only=False)
    state["optimizer"]["state"].pop(next(iter(state["optimizer"]["state"])))
    torch.save(state, saved / "trainer_state.pt")
    assert train(cfg)["status"] == "succeeded"


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(
    llama_model: Path, chat_data, tmp_path: Path
) -> None:
    cfg = config(llama_model, chat_data, tmp_path / "run", max_steps=4, save_steps=100)
    first = paused_after_one_step(cfg)
    second = paused_after_one_step(cfg)  # resumes, and pauses again after step 2
    assert (first.name, second.name) == ("step-000001", "step-000002")
    state = second / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # meta.json is there, but the file was damaged later
    resumed = train(cfg)
    assert resumed["status"] == "succeeded"
    events = [e["message"] for e in RunFiles(cfg.output_dir).read_events()]
    assert any("step-000002" in m and "damaged: skipped" in m for m in events)
    assert "resumed from step-000001 at step 1/4" in events
    straight = train(config(llama_model, chat_data, tmp_path / "straight", max_steps=4))
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6)
    # with nothing left that can be read, the run says so instead of starting again from step 0
    for saved in RunFiles(cfg.output_dir).checkpoint_dirs():
        (saved / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"every checkpoint in .* is damaged"):
        train(cfg)


def test_a_resume_with_another_lora_shape_is_refused_and_changes_nothing(
    llama_model: Path, chat_data, tmp_path: Path
) -> None:
    cfg = config(llama_model, chat_data, tmp_path / "run", max_steps=3, save_steps=100)
    paused_after_one_step(cfg)
    run = RunFiles(cfg.output_dir)
    before = run.config.read_text()
    for changed in ({"lora_rank": 4}, {"target_modules": ["q_proj"]}):  # the adapter's tensors change shape
        with pytest.raises(ConfigError, match="other data or training settings"):
            train(config(llama_model, chat_data, run.root, max_steps=3, save_steps=100, **changed))
        assert run.config.read_text() == before  # what `fth resume` starts again from
    assert train(cfg)["status"] == "succeeded"


def test_model_problems_found_before_training(llama_model: Path, qwen_model: Path, chat_data, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        train(config(tmp_path / "not-there", chat_data, tmp_path / "r1"))
    for tied in ("lm_head", "embed_tokens"):  # qwen2's output layer is its embeddings
        with pytest.raises(ConfigError, match="which this model ties together"):
            train(config(qwen_model, chat_data, tmp_path / "r2", target_modules=["q_proj", tied], merge=True))
    assert not RunFiles(tmp_path / "r2").checkpoint_dirs()


def test_resume_after_kill_continues_identically(llama_model: Path, chat_data, tmp_path: Path) -> None:
    settings = {"max_steps": 36, "batch_size": 2, "lora_dropout": 0.1, "save_steps": 3, "eval_steps": 12}
    straight = train(config(llama_model, chat_data, tmp_path / "straight", **settings))
    run = RunFiles(tmp_path / "killed")
    config(llama_model, chat_data, run.root, **settings).save(tmp_path / "killed.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "local_backend.train", "--config", str(tmp_path / "killed.json")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while run.latest_checkpoint() is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    status = run.read_status() or {}
    assert status["state"] == "running" and status["step"] >= 3  # no last word, but its progress so far
    resumed = train(config(llama_model, chat_data, run.root, **settings))
    assert resumed["status"] == "succeeded"
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-6)
    assert_same_weights(Path(resumed["adapter"]), Path(straight["adapter"]))


def test_merge_round_trip(qwen_model: Path, chat_data, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    summary = train(config(qwen_model, chat_data, tmp_path / "run", max_steps=5, merge=True))
    assert summary["merge_check"]["max_abs_diff"] <= summary["merge_check"]["tolerance"]
    ids = torch.tensor([[3, 17, 42, 99, 7, 64]])
    with torch.no_grad():
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(qwen_model), summary["adapter"]).eval()
        merged = AutoModelForCausalLM.from_pretrained(summary["merged"]).eval()
        base = AutoModelForCausalLM.from_pretrained(qwen_model).eval()
        want, got, before = (m(input_ids=ids).logits for m in (peft, merged, base))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, before, atol=1e-3)  # the adapter changed something


def test_bad_settings_fail_before_loading(llama_model: Path, chat_data, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="report_to"):
        config(llama_model, chat_data, tmp_path / "r", report_to=["neptune"])
    with pytest.raises(ConfigError, match="'varlen': needs packing = true"):
        config(llama_model, chat_data, tmp_path / "r", attention="varlen", packing=False)
    with pytest.raises(ConfigError, match="fsdp = True: does not combine with quantize"):
        config(llama_model, chat_data, tmp_path / "r", fsdp=True, quantize="4bit")
    with pytest.raises(ConfigError, match=r"unknown key\(s\): epoch \(did you mean epochs\?\)"):
        TrainConfig.from_dict({"model": "m", "train_file": "t", "output_dir": "o", "epoch": 3})
    # values as a JSON config could carry them: each named with what it must be
    for key, value, rule in [("learning_rate", "2e-4", "a number"), ("packing", "false", "true or false"),
                             ("batch_size", 2.5, "a whole number"), ("report_to", "tensorboard", "a list of strings"),
                             ("logging_steps", 0, "at least 1"), ("weight_decay", -0.1, "at least 0")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"{key} = .*{rule}"):
            TrainConfig.from_dict({"model": "m", "train_file": "t", "output_dir": "o", key: value})
    # numbers and sequences from Python callers become the plain JSON types the config is saved as
    import numpy as np

    cfg = config(llama_model, chat_data, tmp_path / "n", learning_rate=np.float32(5e-4), epochs=np.int64(2),
                 target_modules=("q_proj",))  # fmt: skip
    assert (type(cfg.learning_rate), type(cfg.epochs), cfg.target_modules) == (float, int, ["q_proj"])
    assert TrainConfig.load(cfg.save(tmp_path / "n.json")) == cfg
    if all(__import__("importlib").util.find_spec(m) is None for m in ("wandb",)):
        with pytest.raises(ConfigError, match="pip install wandb"):
            train(config(llama_model, chat_data, tmp_path / "r", report_to=["wandb"]))
    assert not (tmp_path / "r").exists()


def test_a_bad_config_file_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from local_backend.train import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "m", "train_fle": "t.jsonl", "output_dir": "o"}))
    assert main(["--config", str(bad)]) == 2
    said = capsys.readouterr().err
    assert f"error: {bad}: train config: unknown key(s): train_fle (did you mean train_file?)" in said
    bad.write_text("{not json")
    assert main(["--config", str(bad)]) == 2
    assert capsys.readouterr().err.count(str(bad)) == 1  # named once where the read itself failed


def test_config_round_trips_through_json(llama_model: Path, chat_data, tmp_path: Path) -> None:
    cfg = config(llama_model, chat_data, tmp_path / "r", target_modules=["q_proj", "v_proj"], report_to=["tensorboard"])
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()).alpha == 16


@pytest.mark.parametrize("fsdp", [False, True], ids=["replicated", "fsdp"])
def test_two_processes_train_like_one_with_gradient_accumulation(
    llama_model: Path, chat_data, tmp_path: Path, fsdp: bool
) -> None:
    """torchrun with 2 CPU processes (gloo): each takes half of every step's micro-batches; the summed
    gradients equal one process accumulating both. 10 micro-batches in steps of 4: in the last step one rank
    has none, and validation's 3 batches split 2 and 1 (with FSDP that rank runs zero-weight fillers)."""
    settings = {"batch_size": 5, "lora_dropout": 0.0}
    single = train(config(llama_model, chat_data, tmp_path / "one", grad_accumulation=4, **settings))
    assert single["step"] == 3
    settings |= {"grad_accumulation": 2, "fsdp": fsdp, "fused_lora": fsdp}  # on GPUs FSDP meets the fused layers
    config(llama_model, chat_data, tmp_path / "two", **settings).save(tmp_path / "two.json")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "local_backend.train", "--config", str(tmp_path / "two.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as torchrun:
        stdout, stderr = torchrun.communicate(timeout=240)
    assert torchrun.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert (RunFiles(tmp_path / "two").read_status() or {})["pid"] == torchrun.pid  # what a watcher must follow
    double = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert losses(double) == pytest.approx(losses(single), rel=1e-5)
    grad_norms = [[h["grad_norm"] for h in s["history"]] for s in (double, single)]
    assert grad_norms[0] == pytest.approx(grad_norms[1], rel=1e-4)  # Adam alone would hide a gradient scaled wrong
    assert double["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
    assert_same_weights(Path(double["adapter"]), Path(single["adapter"]), atol=1e-4)
    assert ("sharded over 2 processes" in stdout + json.dumps(RunFiles(tmp_path / "two").read_events())) == fsdp

    # A pause: the ranks agree through a vote read a step late, so both stop after step 2 (one process: after 1);
    # resuming (from a checkpoint saved whole, then sharded again) goes on exactly, each rank with its own dropout
    # masks. LoRA on the output layer too, whose weights FSDP holds at the root, and a checkpoint right after the
    # last validation.
    linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    settings |= {"lora_dropout": 0.1, "save_steps": 2, "target_modules": linear, "grad_accumulation": 1}  # 5 steps
    runs = {}
    for name in ("straight", "paused"):
        run = RunFiles(tmp_path / name)
        run.root.mkdir()
        config(llama_model, chat_data, run.root, **settings).save(tmp_path / f"{name}.json")
        command[-1] = str(tmp_path / f"{name}.json")
        for expected in ("paused", "succeeded") if name == "paused" else ("succeeded",):
            if expected == "paused":
                run.control.write_text(json.dumps({"request": "pause"}))
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
            runs[name] = json.loads((run.root / "summary.json").read_text())
            assert runs[name]["status"] == expected and runs[name]["step"] == (2 if expected == "paused" else 5)
            run.control.unlink(missing_ok=True)
    assert losses(runs["paused"]) == pytest.approx(losses(runs["straight"]), rel=1e-6)
    assert_same_weights(Path(runs["paused"]["adapter"]), Path(runs["straight"]["adapter"]))


def test_the_adapter_carries_the_template_it_was_trained_with(llama_model: Path, chat_data, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from local_backend.data import FALLBACK_TEMPLATE

    assert AutoTokenizer.from_pretrained(llama_model).chat_template != FALLBACK_TEMPLATE
    summary = train(config(llama_model, chat_data, tmp_path / "run", max_steps=2, chat_template=FALLBACK_TEMPLATE))
    assert AutoTokenizer.from_pretrained(summary["adapter"]).chat_template == FALLBACK_TEMPLATE
