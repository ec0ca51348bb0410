"""Engine settings: one schema, spelled as flags, inferno.toml keys, INFERNO_* variables, child arguments and
the docs table. Defaults < inferno.toml [engine] < INFERNO_* < flags; each value checked against its range."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from inferno.cli import build_parser, core_options
from inferno.config import resolve_engine_settings
from inferno.config_file import ConfigError, ModelConfig, load_management_config
from inferno.engine_settings import ENGINE_SETTINGS, EngineSettings, settings_table_markdown
from inferno.supervisor import core_command

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- engine-settings-table:start -->\n", "<!-- engine-settings-table:end -->"


def _core(tmp_path: Path, *argv: str, toml: str | None = None) -> EngineSettings:
    if toml is not None:
        (tmp_path / "inferno.toml").write_text(toml)
        argv = ("--config", str(tmp_path / "inferno.toml"), *argv)
    return core_options(build_parser().parse_args(["core", *argv]), "127.0.0.1").engine


def test_docs_hold_exactly_the_generated_table() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page.count(START) == 1 and page.count(END) == 1
    between = page[page.index(START) + len(START) : page.index(END)]
    assert between == settings_table_markdown()


def test_the_table_has_a_row_per_setting_with_every_spelling() -> None:
    rows = settings_table_markdown().splitlines()[2:]
    assert len(rows) == len(fields(EngineSettings))
    for spec, row in zip(ENGINE_SETTINGS, rows, strict=True):
        assert f"`{spec.toml_key}`" in row and f"`{spec.flag}`" in row and f"`{spec.env}`" in row


def test_every_field_has_one_spelling_per_surface_and_a_default_in_range() -> None:
    assert [spec.name for spec in ENGINE_SETTINGS] == [f.name for f in fields(EngineSettings)]
    for surface in ("flag", "toml_key", "env"):
        names = [getattr(spec, surface) for spec in ENGINE_SETTINGS]
        assert len(set(names)) == len(names), surface
    for spec in ENGINE_SETTINGS:
        assert spec.minimum <= spec.default <= spec.maximum
        assert getattr(EngineSettings(), spec.name) == spec.default


def test_todays_flags_and_their_variables() -> None:
    assert {spec.name: (spec.flag, spec.env, spec.toml_key) for spec in ENGINE_SETTINGS} == {
        "parallel_sequences": ("--parallel", "INFERNO_PARALLEL", "parallel"),
        "context_length": ("--ctx-size", "INFERNO_CTX_SIZE", "context_length"),
        "batch_tokens": ("--batch-tokens", "INFERNO_BATCH_TOKENS", "batch_tokens"),
        "prompt_tokens_per_step": (
            "--prompt-tokens-per-step",
            "INFERNO_PROMPT_TOKENS_PER_STEP",
            "prompt_tokens_per_step",
        ),
        "long_prompt_tokens_per_step": (
            "--long-prompt-tokens-per-step",
            "INFERNO_LONG_PROMPT_TOKENS_PER_STEP",
            "long_prompt_tokens_per_step",
        ),
        "threads": ("--threads", "INFERNO_THREADS", "threads"),
        "cache_tokens": ("--cache-tokens", "INFERNO_CACHE_TOKENS", "cache_tokens"),
        "prefix_cache_mib": ("--prefix-cache-mib", "INFERNO_PREFIX_CACHE_MIB", "prefix_cache_mib"),
        "draft_tokens": ("--draft-tokens", "INFERNO_DRAFT_TOKENS", "draft_tokens"),
        "stream_interval_ms": ("--stream-interval-ms", "INFERNO_STREAM_INTERVAL_MS", "stream_interval_ms"),
    }


def test_no_source_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in ENGINE_SETTINGS:
        monkeypatch.delenv(spec.env, raising=False)
    assert _core(tmp_path) == EngineSettings()


def test_toml_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in ENGINE_SETTINGS:
        monkeypatch.delenv(spec.env, raising=False)
    toml = "[engine]\nparallel = 2\ncontext_length = 1024\nthreads = 3\ncache_tokens = 4096\n"
    monkeypatch.setenv("INFERNO_CTX_SIZE", "2048")
    monkeypatch.setenv("INFERNO_THREADS", "5")
    engine = _core(tmp_path, "--threads", "7", "--batch-tokens", "256", toml=toml)
    assert engine == EngineSettings(
        parallel_sequences=2,  # inferno.toml
        context_length=2048,  # INFERNO_CTX_SIZE over inferno.toml
        batch_tokens=256,  # flag
        prompt_tokens_per_step=32,  # default
        threads=7,  # flag over INFERNO_THREADS over inferno.toml
        cache_tokens=4096,  # inferno.toml
    )


@pytest.mark.parametrize(
    ("argv", "environ", "toml", "message"),
    [
        (["--parallel", "0"], {}, "", "--parallel must be between 1 and 256, not 0"),
        (["--ctx-size", "-1"], {}, "", "--ctx-size must be between 0 and"),
        ([], {"INFERNO_PARALLEL": "300"}, "", "INFERNO_PARALLEL must be between 1 and 256, not 300"),
        ([], {"INFERNO_THREADS": "many"}, "", "INFERNO_THREADS must be a whole number, not 'many'"),
        ([], {}, "[engine]\nparallel = 0\n", r"\[engine\] parallel must be between 1 and 256, not 0"),
        ([], {}, '[engine]\nthreads = "2"\n', r"\[engine\] threads must be a whole number, not '2'"),
        ([], {}, "[engine]\nthreads = true\n", r"\[engine\] threads must be a whole number"),
        ([], {}, "[engine]\nparallel_sequences = 2\n", r"\[engine\]: unknown keys parallel_sequences"),
        (
            [],
            {},
            '[[models]]\npath = "a.gguf"\nbatch_tokens = 0\n',
            r"\[\[models\]\] #1 batch_tokens must be between 1 and 65536, not 0",
        ),
    ],
)
def test_a_value_out_of_range_names_the_setting_and_its_source(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    environ: dict[str, str],
    toml: str,
    message: str,
) -> None:
    for spec in ENGINE_SETTINGS:
        monkeypatch.delenv(spec.env, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        _core(tmp_path, *argv, toml=toml)


def test_every_bound_is_allowed_and_the_next_value_is_not() -> None:
    for spec in ENGINE_SETTINGS:
        for allowed in (spec.minimum, spec.maximum):
            assert getattr(resolve_engine_settings({}, {}, {spec.name: allowed}), spec.name) == allowed
        for refused in (spec.minimum - 1, spec.maximum + 1):
            with pytest.raises(ConfigError, match=f"^{spec.flag} must be between"):
                resolve_engine_settings({}, {}, {spec.name: refused})


def test_the_core_child_gets_the_resolved_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERNO_PARALLEL", "3")
    options = core_options(
        build_parser().parse_args(["serve", "--ctx-size", "640", "--cache-tokens", "9000"]), "127.0.0.1"
    )
    command = core_command(options)
    # The child sees another environment: its flags alone must give the same settings.
    monkeypatch.setenv("INFERNO_PARALLEL", "5")
    child = core_options(build_parser().parse_args(command[3:]), "127.0.0.1")
    expected = EngineSettings(parallel_sequences=3, context_length=640, cache_tokens=9000)
    assert child.engine == options.engine == expected
    assert all(command.count(spec.flag) == 1 for spec in ENGINE_SETTINGS)


def test_models_entries_carry_their_own_settings_and_engine(tmp_path: Path) -> None:
    (tmp_path / "inferno.toml").write_text(
        "[engine]\nparallel = 4\n"
        '[[models]]\npath = "a.gguf"\nengine = "llamacpp"\n'
        "context_length = 2048\nparallel = 2\ncache_tokens = 64\n"
        '[[models]]\npath = "b.gguf"\nengine = "ExLlamaV2"\n'
        '[[models]]\npath = "c.gguf"\n'
    )
    config = load_management_config(tmp_path / "inferno.toml")
    assert config.engine_defaults == {"parallel_sequences": 4}
    a, b, c = config.models
    assert a.engine == "llama.cpp" and b.engine == "exllamav2" and c.engine is None
    assert a.settings == {"context_length": 2048, "parallel_sequences": 2, "cache_tokens": 64}
    assert b.settings == {} and c.settings == {}


def test_an_unknown_engine_is_refused_where_it_is_written(tmp_path: Path) -> None:
    (tmp_path / "inferno.toml").write_text('[[models]]\npath = "a.gguf"\nengine = "vllm"\n')
    with pytest.raises(
        ConfigError, match=r"\[\[models\]\] #1 engine: 'vllm' is not one of llama.cpp, exllamav2"
    ):
        load_management_config(tmp_path / "inferno.toml")


def test_model_settings_take_only_engine_settings_fields() -> None:
    assert ModelConfig("a.gguf", settings={"threads": 2}).settings == {"threads": 2}
    with pytest.raises(ConfigError, match="parallel are not engine settings"):
        ModelConfig("a.gguf", settings={"parallel": 2})
