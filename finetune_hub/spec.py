"""FineTuneSpec: one description of a fine-tuning run, valid for every platform.

Credentials never live here: adapters read them from the environment or the platform's own config.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from finetune_hub.errors import ConfigError
from local_backend.config import written_as_path  # stdlib only: the trainer checks paths the same way

# A settings key is a credential when one of its words is one of these ("tokens_per_batch" is not).
_SECRET_WORDS = frozenset({"apikey", "key", "token", "secret", "password", "passwd", "credential", "credentials"})
_NOT_SECRET_KEYS = frozenset({"kms_key", "kms_key_id", "encryption_key_name"})  # names of keys, not keys


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last one, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may override keys: that is their point
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"'{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_platform_names(spec: FineTuneSpec, path: Path) -> None:
    """A `providers:` block for a platform that does not exist is a typo whose settings would never apply. Only
    for the user's spec file: a job stored by a version that knew other platforms still opens."""
    from finetune_hub import registry

    for name in spec.providers:
        try:
            registry.check_name(name)
        except ConfigError as exc:
            raise ConfigError(f"{path}: providers.{name}: {exc.message}", hint=exc.hint) from None


def _looks_like_credential(key: str) -> bool:
    normalized = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_")
    return normalized not in _NOT_SECRET_KEYS and bool(_SECRET_WORDS & set(normalized.split("_")))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    train: Path
    validation: Path | None = None
    validation_split: float | None = Field(default=None, gt=0, lt=1)
    format: str = "auto"

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataSpec:
        if self.validation is not None and self.validation_split is not None:
            raise ValueError("give either data.validation or data.validation_split, not both")
        return self


class Hyperparameters(_Strict):
    epochs: int | None = Field(default=None, ge=1, le=100)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    learning_rate_multiplier: float | None = Field(default=None, gt=0, le=100)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_seq_length: int | None = Field(default=None, ge=16)
    beta: float | None = Field(default=None, gt=0, le=2, description="DPO temperature")
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)


class LoraSpec(_Strict):
    rank: int = Field(default=16, ge=1, le=1024)
    alpha: int | None = Field(default=None, ge=1, description="defaults to 2 × rank")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    quantize: Literal["none", "4bit", "8bit"] = "none"


class Budget(_Strict):
    max_usd: float | None = Field(default=None, gt=0)
    auto_cancel: bool = False


class FineTuneSpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    base_model: str | dict[str, str]
    data: DataSpec
    method: Literal["sft", "dpo"] = "sft"
    hyperparameters: Hyperparameters = Hyperparameters()
    lora: LoraSpec | None = None
    seed: int | None = Field(default=None, ge=0, le=2_147_483_647)
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    budget: Budget = Budget()
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)  # the file it was loaded from, for errors that point into it

    @property
    def source_file(self) -> Path | None:
        return self._file

    @field_validator("providers")
    @classmethod
    def _no_credentials(cls, blocks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for provider, block in blocks.items():
            for key in block:  # setting names only: nested keys (labels, tags, metadata) are the user's own words
                if _looks_like_credential(key):
                    raise ValueError(
                        f"'{key}' in providers.{provider} looks like a credential; credentials never go in "
                        "the spec: set them in the environment or the platform's standard config"
                    )
        return blocks

    def base_model_for(self, provider: str) -> str:
        if isinstance(self.base_model, str):
            return self.base_model
        model = self.base_model.get(provider) or self.base_model.get("default")
        if model is None:
            known = ", ".join(sorted(self.base_model)) or "none"
            raise ConfigError(
                f"base_model: no model for provider '{provider}' (given for: {known})",
                hint=f"add `base_model: {{{provider}: <model id>}}` to the spec, or a `default:` entry",
            )
        return model

    def settings_for(self, provider: str) -> dict[str, Any]:
        return dict(self.providers.get(provider, {}))

    def content_hash(self) -> str:
        """Stable hash of what was asked, independent of key order and of where the spec was loaded from."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, source: str = "<spec>", base_dir: Path | None = None, file: Path | None = None
    ) -> FineTuneSpec:
        """Validate `data`; `file`, the spec file it was read from: errors then give its lines."""
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                explain_validation_error(exc, source, FineTuneSpec, file=file),
                hint="see the spec reference in README.md",
            ) from None
        spec._file = file
        return spec._anchored(base_dir) if base_dir else spec

    @classmethod
    def load(cls, path: str | Path) -> FineTuneSpec:
        """Load a YAML (.yaml/.yml) or TOML (.toml) spec; paths are relative to the spec file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the spec ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: the spec is not UTF-8 text (byte {exc.start + 1} cannot be decoded)",
                hint="save the spec as UTF-8 YAML or TOML",
            ) from None
        try:
            data = (
                tomllib.loads(text)
                if path.suffix == ".toml"
                else yaml.load(_named(text, path), Loader=_UniqueKeyLoader)
            )
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the spec must be a mapping of keys to values, got {type(data).__name__}")
        spec = cls.from_dict(data, source=str(path), base_dir=path.parent, file=path)
        _check_platform_names(spec, path)
        return spec

    def _anchored(self, base_dir: Path) -> FineTuneSpec:
        """Paths relative to the spec file made absolute: the data files, and a base model written as a path
        (./, ../, ~) or found as a folder beside the spec. Anything else stays as written: a Hub or platform id,
        or a relative folder not beside the spec (read from the working directory, as before)."""

        def anchor(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (base_dir / p).resolve()

        def model(name: str) -> str:
            as_path = written_as_path(name) or (base_dir / name).is_dir()
            return str(anchor(Path(name).expanduser())) if as_path else name

        data = self.data.model_copy(
            update={"train": anchor(self.data.train), "validation": anchor(self.data.validation)}
        )
        models = (
            model(self.base_model)
            if isinstance(self.base_model, str)
            else {k: model(v) for k, v in self.base_model.items()}
        )
        return self.model_copy(update={"data": data, "base_model": models})


def _named(text: str, path: Path) -> io.StringIO:
    """The spec's text as a stream named after its file, so YAML's errors say where ("<unicode string>" else)."""
    stream = io.StringIO(text)
    stream.name = str(path)
    return stream


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The valid keys at `loc` (the parent of an unknown key), walking nested models."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = next((a for a in candidates if issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def explain_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel], *, file: Path | None = None, at: tuple[str, ...] = ()
) -> str:
    """One line per problem: where (the key path; with the spec `file`, its file:line), what is wrong, and the
    closest valid key for typos. `at`: where `model` sits in the file (("providers", "sagemaker"))."""
    known = _key_lines(file) if file is not None else {}
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        full = (*at, *(str(p) for p in loc))
        line = next((known[full[:n]] for n in range(len(full), 0, -1) if full[:n] in known), None)
        where, path = (f"{file}:{line}", ".".join(full)) if line else (source, ".".join(str(p) for p in loc))
        path = path or "(top level)"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(model, loc[:-1]), n=1)
            tip = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{where}: {path}: unknown key{tip}")
        elif err["type"] == "missing":
            lines.append(f"{where}: {path}: required key is missing")
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {path}: {msg}{shown}")
    return "\n".join(lines)


def _key_lines(file: Path) -> dict[tuple[str, ...], int]:
    """The line of every key path in a YAML spec (list items by index); none for TOML or an unreadable file.
    Read only when there is an error to place."""
    if file.suffix == ".toml":
        return {}
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node | None, path: tuple[str, ...]) -> None:
        pairs = (
            [(str(k.value), k, v) for k, v in node.value]
            if isinstance(node, yaml.MappingNode)
            else [(str(i), v, v) for i, v in enumerate(node.value)]
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        for name, key, value in pairs:
            found[(*path, name)] = key.start_mark.line + 1
            walk(value, (*path, name))

    walk(root, ())
    return found
