"""inferno.toml, the model catalog and its path confinement, and memory estimates from GGUF headers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from inferno.config_file import (
    ConfigError,
    ManagementConfig,
    load_management_config,
    parse_duration,
    parse_size,
)
from inferno.core.catalog import ENGINE_OVERHEAD_BYTES, build_catalog, confine
from inferno.core.embedded import EMBEDDED_MODEL_ID, embedded_model_path
from inferno.core.gguf_header import read_gguf_metadata
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError

DEFAULTS = EngineSettings(parallel_sequences=2, context_length=512)
# SmolLM2-135M: 30 layers, 3 KV heads of 64 dimensions, f16 K and V.
SMOLLM2_KV_BYTES_PER_TOKEN = 30 * 3 * (64 + 64) * 2


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), ("512MB", 512 * 10**6), ("8GiB", 8 << 30), ("1.5 GB", 1_500_000_000), ("100", 100)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text, "x") == size


def test_durations() -> None:
    assert parse_duration("90s", "x") == 90
    assert parse_duration("10m", "x") == 600
    assert parse_duration(2, "x") == 2
    assert parse_duration("0", "x") is None
    with pytest.raises(ConfigError):
        parse_duration("soon", "x")


def _write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    path = tmp_path / "inferno.toml"
    path.write_text(body)
    return path


def test_config_file_entries_and_settings(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(embedded_model_path(), tmp_path / "models" / "second.gguf")
    shutil.copy(embedded_model_path(), tmp_path / "models" / "Found Later.gguf")
    config = load_management_config(
        _write_config(
            tmp_path,
            """
[server]
models_dirs = ["models"]
auto_load = false
memory_budget = "2GiB"
keep_alive = "5m"

[[models]]
id = "second"
path = "second.gguf"
context_length = 256
parallel = 3
load = true
keep_alive = "0"
owned_by = "team-a"
""",
        )
    )
    assert config.auto_load is False and config.memory_budget_bytes == 2 << 30 and config.keep_alive_s == 300
    catalog = build_catalog(config, (), DEFAULTS)
    assert [e.id for e in catalog] == ["second", "found-later", EMBEDDED_MODEL_ID]
    second, found, embedded = catalog
    assert second.settings.parallel_sequences == 3 and second.settings.context_length == 256
    assert second.load_at_start and second.keep_alive_s is None and second.owned_by == "team-a"
    assert not found.load_at_start and found.keep_alive_s == 300
    assert not embedded.load_at_start
    size = embedded_model_path().stat().st_size
    assert second.file_size_bytes == size
    assert (
        second.estimated_memory_bytes() == size + 256 * 3 * SMOLLM2_KV_BYTES_PER_TOKEN + ENGINE_OVERHEAD_BYTES
    )


def test_without_config_the_embedded_model_loads_at_start() -> None:
    catalog = build_catalog(ManagementConfig(), (), DEFAULTS)
    assert [(e.id, e.load_at_start) for e in catalog] == [(EMBEDDED_MODEL_ID, True)]
    expected = catalog[0].file_size_bytes + 512 * 2 * SMOLLM2_KV_BYTES_PER_TOKEN + ENGINE_OVERHEAD_BYTES
    assert catalog[0].estimated_memory_bytes() == expected


@pytest.mark.parametrize(
    ("path", "why"),
    [("../outside.gguf", "'..'"), ("/etc/hostname", "outside"), ("link.gguf", "outside")],
)
def test_model_paths_stay_inside_the_models_dirs(tmp_path: Path, path: str, why: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    outside = tmp_path / "outside.gguf"
    shutil.copy(embedded_model_path(), outside)
    os.symlink(outside, models / "link.gguf")
    with pytest.raises(ConfigError, match=why):
        confine(path, (models,), "[[models]] #1")
    assert confine("x.gguf", (models,), "w") == (models / "x.gguf").resolve()


def test_unknown_config_keys_and_engines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        load_management_config(_write_config(tmp_path, "[server]\nmodel_dirs = []\n"))
    with pytest.raises(ConfigError, match="engine: 'vllm' is not"):
        load_management_config(_write_config(tmp_path, '[[models]]\npath = "a.gguf"\nengine = "vllm"\n'))


def test_a_corrupt_file_fails_with_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(64))
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello")
    for path in (corrupt, not_gguf):
        with pytest.raises(InfernoError) as caught:
            read_gguf_metadata(path)
        assert caught.value.code == "model_load_failed"
        assert path.name in caught.value.message
