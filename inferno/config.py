"""Settings of the two processes, as the CLI resolves them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inferno.config_file import ConfigError, check_engine_setting
from inferno.engine_settings import ENGINE_SETTINGS, EngineSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 50051
# The gateway's gRPC relay (`inferno gateway --grpc-port`) in a fleet behind Envoy.
DEFAULT_RELAY_PORT = 8081


@dataclass(frozen=True)
class SecurityFlags:
    """[security] settings given on the command line; None: as inferno.toml and the environment say."""

    data_dir: Path | None = None
    api_keys: bool | None = None
    allow_unauthenticated: bool | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None

    def overrides(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def arguments(self) -> list[str]:
        """The same flags for a child process."""
        args: list[str] = []
        for name, value in self.overrides().items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(Path(str(value)).resolve())]
        return args


@dataclass(frozen=True)
class CoreOptions:
    host: str = DEFAULT_HOST
    grpc_port: int = DEFAULT_GRPC_PORT
    # Empty: serve the embedded default model.
    model_paths: tuple[Path, ...] = field(default_factory=tuple)
    # Resolved: defaults < inferno.toml [engine] < INFERNO_* < flags (resolve_engine_settings).
    engine: EngineSettings = field(default_factory=EngineSettings)
    # inferno.toml; None: none (the flags below and the defaults only).
    config_path: Path | None = None
    models_dirs: tuple[Path, ...] = field(default_factory=tuple)
    # None: as the config file says (default true).
    auto_load: bool | None = None
    memory_budget: str | None = None
    evict_idle: bool | None = None
    keep_alive: str | None = None
    security: SecurityFlags = field(default_factory=SecurityFlags)


def resolve_engine_settings(
    file_values: Mapping[str, int], environ: Mapping[str, str], flags: Mapping[str, int | None]
) -> EngineSettings:
    """Engine settings from the defaults, then inferno.toml's [engine] (file_values, already checked, by
    field name), then INFERNO_* variables, then flags (by field name; None: not given). Each value is
    checked against its setting's range, and an error names where the value came from."""
    values = dict(file_values)
    for spec in ENGINE_SETTINGS:
        text = environ.get(spec.env)
        if text is not None:
            try:
                number = int(text)
            except ValueError:
                raise ConfigError(f"{spec.env} must be a whole number, not {text!r}") from None
            values[spec.name] = check_engine_setting(spec, number, spec.env)
        flag = flags.get(spec.name)
        if flag is not None:
            values[spec.name] = check_engine_setting(spec, flag, spec.flag)
    return EngineSettings(**values)


@dataclass(frozen=True)
class GatewayOptions:
    core_address: str = f"{DEFAULT_HOST}:{DEFAULT_GRPC_PORT}"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_HTTP_PORT
    config_path: Path | None = None
    security: SecurityFlags = field(default_factory=SecurityFlags)
    # The gRPC relay's port (adapters/grpc_relay.py); None: no relay.
    relay_port: int | None = None
