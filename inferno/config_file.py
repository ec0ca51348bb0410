"""inferno.toml: the models the core knows and how it manages them.

[server]
models_dirs = ["models"]        # relative to this file; model paths must stay inside these
auto_load = true                # load a model on its first request (false: answer model_not_loaded)
memory_budget = "8GiB"          # estimated memory of loaded models; unset: no budget
evict_idle = false              # over budget: unload the least recently used idle model instead of refusing
keep_alive = "0"                # default idle time before a model unloads ("0": never)

[engine]                        # engine settings of every model (docs/configuration.md lists them all)
parallel = 8
context_length = 4096

[[models]]
id = "smol"                     # optional; default: from the file name
path = "smollm2.gguf"           # inside a models dir
engine = "llama.cpp"            # or "exllamav2"; unset: chosen from the model
context_length = 2048           # any [engine] setting, for this model only
parallel = 4
load = false                    # load at start
keep_alive = "10m"
owned_by = "me"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferno.core.engines.registry import canonical_engine, engine_packages
from inferno.engine_settings import ENGINE_SETTINGS, SettingSpec


class ConfigError(ValueError):
    """inferno.toml or a flag is wrong; the message says where."""


@dataclass(frozen=True)
class ModelConfig:
    path: str
    id: str | None = None
    # "llama.cpp" or "exllamav2"; None: chosen from the model.
    engine: str | None = None
    # EngineSettings fields this model sets, over the server-wide ones.
    settings: dict[str, int] = field(default_factory=dict)
    load: bool = False
    keep_alive_s: float | None = None
    owned_by: str = "local"

    def __post_init__(self) -> None:
        unknown = set(self.settings) - {spec.name for spec in ENGINE_SETTINGS}
        if unknown:
            raise ConfigError(f"model {self.path}: {', '.join(sorted(unknown))} are not engine settings")


@dataclass(frozen=True)
class ManagementConfig:
    models_dirs: tuple[Path, ...] = ()
    auto_load: bool = True
    memory_budget_bytes: int | None = None
    evict_idle: bool = False
    # None: models stay loaded until unloaded.
    keep_alive_s: float | None = None
    models: tuple[ModelConfig, ...] = field(default_factory=tuple)
    # EngineSettings fields from the [engine] table.
    engine_defaults: dict[str, int] = field(default_factory=dict)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_size(value: Any, where: str) -> int:
    """Bytes from 123, "512MB", "8GiB" (binary with i, decimal without)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"{where}: {value!r} is not a size such as 512MB or 8GiB")
    unit = (match.group(2) or "").upper()
    binary = "I" in unit
    base = unit[:1] if unit not in ("", "B") else unit
    scale = 1024 ** " KMGT".index(base) if binary else _SIZE_UNITS[base]
    return int(float(match.group(1)) * scale)


def parse_duration(value: Any, where: str) -> float | None:
    """Seconds from 30, "90s", "10m", "1h"; 0 means never (None)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{where}: {value!r} is not a duration such as 90s, 10m or 1h")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ConfigError(f"{where}: a duration cannot be negative")
    return seconds or None


def check_engine_setting(spec: SettingSpec, value: object, source: str) -> int:
    """The value of one engine setting, refused unless a whole number in its range; source names where it
    came from (a flag, a variable, a table and key)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source} must be a whole number, not {value!r}")
    if not spec.minimum <= value <= spec.maximum:
        raise ConfigError(f"{source} must be between {spec.minimum} and {spec.maximum}, not {value}")
    return value


def engine_settings_table(table: Any, where: str) -> dict[str, int]:
    """EngineSettings field -> value, from a table keyed by the settings' inferno.toml keys; other keys are
    left to the caller."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    return {
        spec.name: check_engine_setting(spec, table[spec.toml_key], f"{where} {spec.toml_key}")
        for spec in ENGINE_SETTINGS
        if spec.toml_key in table
    }


def load_management_config(path: Path) -> ManagementConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.resolve().parent
    server = raw.get("server", {})
    _only_keys(server, {"models_dirs", "auto_load", "memory_budget", "evict_idle", "keep_alive"}, "[server]")
    dirs = tuple((base / d).resolve() for d in server.get("models_dirs", ["models"]))
    budget = server.get("memory_budget")
    engine = raw.get("engine", {})
    engine_defaults = engine_settings_table(engine, "[engine]")
    _only_keys(engine, _SETTING_KEYS, "[engine]")
    models = tuple(
        _model_config(entry, f"[[models]] #{i + 1}") for i, entry in enumerate(raw.get("models", []))
    )
    return ManagementConfig(
        models_dirs=dirs,
        auto_load=_bool(server.get("auto_load", True), "[server] auto_load"),
        memory_budget_bytes=None if budget is None else parse_size(budget, "[server] memory_budget"),
        evict_idle=_bool(server.get("evict_idle", False), "[server] evict_idle"),
        keep_alive_s=parse_duration(server.get("keep_alive", 0), "[server] keep_alive"),
        models=models,
        engine_defaults=engine_defaults,
    )


_SETTING_KEYS = {spec.toml_key for spec in ENGINE_SETTINGS}
_MODEL_KEYS = {"id", "path", "engine", "load", "keep_alive", "owned_by"} | _SETTING_KEYS


def _model_config(entry: dict[str, Any], where: str) -> ModelConfig:
    _only_keys(entry, _MODEL_KEYS, where)
    if not isinstance(entry.get("path"), str):
        raise ConfigError(f"{where}: 'path' is required")
    keep_alive = entry.get("keep_alive")
    return ModelConfig(
        path=entry["path"],
        id=entry.get("id"),
        engine=_engine_name(entry.get("engine"), f"{where} engine"),
        settings=engine_settings_table(entry, where),
        load=_bool(entry.get("load", False), f"{where} load"),
        keep_alive_s=None if keep_alive is None else parse_duration(keep_alive, f"{where} keep_alive") or 0.0,
        owned_by=entry.get("owned_by", "local"),
    )


def _engine_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    engine = canonical_engine(value) if isinstance(value, str) else None
    if engine is None:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(engine_packages())}")
    return engine


def _only_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false")
    return value
