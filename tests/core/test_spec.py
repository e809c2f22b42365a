from __future__ import annotations

from pathlib import Path

import pytest

from finetune_hub.errors import ConfigError
from finetune_hub.spec import FineTuneSpec

VALID = """
name: support-bot
base_model:
  openai: gpt-4.1-mini-2025-04-14
  local: ./tiny-model
data:
  train: data/train.jsonl
  validation_split: 0.1
method: sft
hyperparameters: {epochs: 3, learning_rate_multiplier: 1.5, batch_size: 8}
lora: {rank: 8, alpha: 16}
seed: 7
suffix: support
budget: {max_usd: 20}
providers:
  azure_openai: {training_type: GlobalStandard}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    with pytest.raises(ConfigError) as exc:
        FineTuneSpec.load(write(tmp_path, text, name))
    return exc.value.message


def test_loads_yaml_with_paths_relative_to_the_spec(tmp_path: Path) -> None:
    spec = FineTuneSpec.load(write(tmp_path, VALID))
    assert spec.data.train == (tmp_path / "data" / "train.jsonl").resolve()
    assert spec.base_model_for("openai") == "gpt-4.1-mini-2025-04-14"
    assert spec.hyperparameters.epochs == 3 and spec.lora is not None and spec.lora.rank == 8
    assert spec.settings_for("azure_openai") == {"training_type": "GlobalStandard"}
    assert spec.settings_for("vertex") == {}
    assert spec.base_model_for("local") == str((tmp_path / "tiny-model").resolve())  # beside the spec, not the cwd


def test_a_base_model_folder_beside_the_spec_is_found_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "gpt-4o-mini-2024-07-18").write_text("notes")  # a file named like an id is not a model folder
    models = "{local: models/base, sagemaker: Qwen/Qwen2.5-0.5B, vertex: '~/m', openai: gpt-4o-mini-2024-07-18, "
    models += "default: other/dir/model}"
    text = f"name: x\nbase_model: {models}\ndata: {{train: t.jsonl}}\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # loaded from another working directory
    spec = FineTuneSpec.load(tmp_path / write(tmp_path, text).name)
    assert spec.base_model_for("local") == str((tmp_path / "models" / "base").resolve())
    assert spec.base_model_for("sagemaker") == "Qwen/Qwen2.5-0.5B"  # a Hub id, with no such folder here
    assert spec.base_model_for("vertex") == str(Path("~/m").expanduser())
    assert spec.base_model_for("openai") == "gpt-4o-mini-2024-07-18"
    assert spec.base_model_for("azure_openai") == "other/dir/model"  # not beside the spec: left for the cwd


def test_toml_and_python_give_the_same_spec(tmp_path: Path) -> None:
    toml = """
name = "support-bot"
base_model = "gpt-4.1-mini-2025-04-14"
[data]
train = "train.jsonl"
[hyperparameters]
epochs = 2
"""
    from_toml = FineTuneSpec.load(write(tmp_path, toml, "spec.toml"))
    from_python = FineTuneSpec.from_dict(
        {
            "name": "support-bot",
            "base_model": "gpt-4.1-mini-2025-04-14",
            "data": {"train": str(tmp_path / "train.jsonl")},
            "hyperparameters": {"epochs": 2},
        }
    )
    assert from_toml.model_dump() == from_python.model_dump()  # the loaded one also remembers its file
    assert from_toml.content_hash() == from_python.content_hash()
    assert (from_toml.source_file, from_python.source_file) == (tmp_path / "spec.toml", None)
    assert from_toml.base_model_for("vertex") == "gpt-4.1-mini-2025-04-14"  # one string applies to all


def test_unknown_key_names_the_path_and_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("epochs: 3", "epoch: 3"))
    assert "hyperparameters.epoch: unknown key; did you mean 'epochs'?" in message
    assert f"{tmp_path / 'spec.yaml'}:10: hyperparameters.epoch" in message  # the file, and the line of the key
    assert "did you mean 'hyperparameters'" in error_of(tmp_path, VALID.replace("hyperparameters:", "hyperparamters:"))


def test_wrong_type_names_the_path_and_the_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("epochs: 3", "epochs: three"))
    assert "hyperparameters.epochs" in message and "'three'" in message


def test_out_of_range_and_conflicting_values(tmp_path: Path) -> None:
    assert "lora.rank" in error_of(tmp_path, VALID.replace("rank: 8", "rank: 0"))
    both = VALID.replace("validation_split: 0.1", "validation_split: 0.1\n  validation: v.jsonl")
    assert "either data.validation or data.validation_split" in error_of(tmp_path, both)
    assert "method" in error_of(tmp_path, VALID.replace("method: sft", "method: rlhf"))


def test_missing_required_keys(tmp_path: Path) -> None:
    assert "base_model: required key is missing" in error_of(tmp_path, "name: x\ndata: {train: a.jsonl}\n")


def test_missing_base_model_for_the_chosen_platform(tmp_path: Path) -> None:
    spec = FineTuneSpec.load(write(tmp_path, VALID))
    with pytest.raises(ConfigError) as exc:
        spec.base_model_for("vertex")
    assert "base_model" in exc.value.message and "vertex" in exc.value.message
    assert exc.value.hint and "base_model" in exc.value.hint


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = error_of(tmp_path, "name: [unclosed\n")
    assert "not valid YAML" in bad and f'in "{tmp_path / "spec.yaml"}", line' in bad and "<unicode string>" not in bad
    assert "must be a mapping" in error_of(tmp_path, "- just\n- a list\n")
    with pytest.raises(ConfigError, match="cannot read"):
        FineTuneSpec.load(tmp_path / "absent.yaml")


@pytest.mark.parametrize("data", [VALID.encode("utf-16"), b"\x89PNG\r\n\x1a\n\x00\xff\xfe"], ids=["utf-16", "binary"])
def test_a_spec_that_is_not_utf8_names_the_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match="not UTF-8") as exc:
        FineTuneSpec.load(path)
    assert str(path) in exc.value.message and exc.value.hint and "UTF-8" in exc.value.hint


def test_credentials_are_refused_in_the_spec(tmp_path: Path) -> None:
    text = VALID.replace("training_type: GlobalStandard", "api_key: sk-live-abcdefghijklmnop")
    message = error_of(tmp_path, text)
    assert "credential" in message and "sk-live-abcdefghijklmnop" not in message


@pytest.mark.parametrize("key", ["api_key", "AccessToken", "client_secret", "sas-token", "password", "key"])
def test_credential_looking_settings_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="credential"):
        FineTuneSpec.from_dict({"name": "x", "base_model": "m", "data": {"train": "t"}, "providers": {"p": {key: "v"}}})


@pytest.mark.parametrize("key", ["tokens_per_batch", "max_tokens", "kms_key_id", "keep_checkpoints", "monkey"])
def test_ordinary_settings_are_not_mistaken_for_credentials(key: str) -> None:
    spec = FineTuneSpec.from_dict(
        {"name": "x", "base_model": "m", "data": {"train": "t"}, "providers": {"p": {key: 1}}}
    )
    assert spec.settings_for("p") == {key: 1}


def test_user_chosen_nested_keys_pass_and_a_stored_spec_that_fails_is_a_clear_error(tmp_path: Path) -> None:
    from finetune_hub import api
    from finetune_hub.store import JobStore

    settings = {"metadata": {"experiment_key": "e1"}, "labels": {"cost-key": "ml"}, "tags": [{"Key": "team"}]}
    raw = {"name": "x", "base_model": "m", "data": {"train": "t"}, "providers": {"openai": settings}}
    assert FineTuneSpec.from_dict(raw).settings_for("openai") == settings  # their keys are the user's words
    # a job stored by another version, whose spec this version refuses: a clear error, not a traceback
    store = JobStore(tmp_path / "jobs.db")
    record = store.create_job(provider="openai", name="x", spec={**raw, "epochs": 3}, spec_hash="s", data_hash="d")
    with pytest.raises(ConfigError, match=f"job {record.id}'s stored spec") as refused:
        api.open_job(record.id, store=store)
    assert "can still follow it" in (refused.value.hint or "")
    from finetune_hub.rerun import plan_rerun

    with pytest.raises(ConfigError, match=f"job {record.id}'s stored spec"):  # `fth rerun` too
        plan_rerun(record.id, "azure_openai", store=store)


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "defaults: &d {epochs: 2, batch_size: 4}\nname: x\nbase_model: m\ndata: {train: t.jsonl}\n"
        "hyperparameters: {<<: *d, epochs: 3}\n"
    )
    with pytest.raises(ConfigError, match="defaults"):  # an unknown top-level key, not a duplicate
        FineTuneSpec.load(path)
    path.write_text(
        "name: x\nbase_model: m\ndata: {train: t.jsonl}\nhyperparameters: {<<: {epochs: 2, batch_size: 4}, epochs: 3}\n"
    )
    assert FineTuneSpec.load(path).hyperparameters.epochs == 3


def test_a_wrong_platform_setting_names_its_line_in_the_spec_file(tmp_path: Path) -> None:
    from finetune_hub.api import make_job

    text = VALID.replace("{training_type: GlobalStandard}", "\n    training_type: GlobalStandard\n    api_versoin: x")
    spec = FineTuneSpec.load(write(tmp_path, text))
    with pytest.raises(ConfigError) as caught:
        make_job("azure_openai", spec)
    line = text.splitlines().index("    api_versoin: x") + 1
    assert f"spec.yaml:{line}: providers.azure_openai.api_versoin: unknown key" in caught.value.message
