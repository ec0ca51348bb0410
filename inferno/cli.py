"""The `inferno` command: serve (core + gateway), core, gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from inferno import __version__
from inferno.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    CoreOptions,
    GatewayOptions,
    SecurityFlags,
    resolve_engine_settings,
)
from inferno.config_file import ConfigError, load_management_config
from inferno.convert_cli import add_convert_arguments
from inferno.deploy_config import add_deploy_config_arguments
from inferno.engine_settings import ENGINE_SETTINGS, EngineSettings
from inferno.envoy_config import add_envoy_config_arguments
from inferno.errors import InfernoError
from inferno.gateway_grpc import GRPC_EXPERIMENTS_ENV, gateway_environment
from inferno.lifecycle import (
    EXIT_STARTUP_REFUSED,
    StartupError,
    die_with_parent,
    inferno_command,
    shutdown_grace_s,
)


def _add_core_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port of the core")
    parser.add_argument(
        "--model",
        action="append",
        type=Path,
        default=[],
        metavar="PATH.gguf",
        help="serve this GGUF file (repeatable); default: the embedded SmolLM2-135M-Instruct",
    )
    parser.add_argument("--config", type=Path, help="inferno.toml: models, models dirs, memory budget")
    parser.add_argument(
        "--models-dir", action="append", type=Path, default=[], help="serve the GGUF files in this directory"
    )
    parser.add_argument(
        "--auto-load",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load a model on its first request (default: on)",
    )
    parser.add_argument("--memory-budget", help="estimated memory all loaded models may take, e.g. 8GiB")
    parser.add_argument(
        "--evict-idle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="over the budget, unload the least recently used idle model instead of refusing",
    )
    parser.add_argument("--keep-alive", help="unload models idle this long, e.g. 10m (0: never)")
    engine = parser.add_argument_group("engine (flags win over INFERNO_* and [engine] in inferno.toml)")
    for spec in ENGINE_SETTINGS:
        engine.add_argument(
            spec.flag,
            dest=spec.name,
            type=int,
            metavar="N",
            help=f"{spec.help} (default {spec.default}; {spec.env})",
        )


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security (flags win over [security] in inferno.toml and INFERNO_*)")
    group.add_argument("--data-dir", type=Path, help="where the API key database lives")
    group.add_argument(
        "--api-keys",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accept API keys from the store",
    )
    group.add_argument(
        "--allow-unauthenticated",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow a non-loopback address with no authentication",
    )
    group.add_argument("--tls-cert", type=Path, help="PEM certificate: HTTPS and gRPC over TLS")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument("--tls-ca", type=Path, help="PEM certificate the gateway trusts for the core")


def _security_flags(args: argparse.Namespace) -> SecurityFlags:
    return SecurityFlags(
        data_dir=args.data_dir,
        api_keys=args.api_keys,
        allow_unauthenticated=args.allow_unauthenticated,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
    )


def _engine_settings(args: argparse.Namespace) -> EngineSettings:
    file_values = load_management_config(args.config).engine_defaults if args.config else {}
    flags = {spec.name: getattr(args, spec.name) for spec in ENGINE_SETTINGS}
    return resolve_engine_settings(file_values, os.environ, flags)


def core_options(args: argparse.Namespace, host: str) -> CoreOptions:
    """The core's options from parsed `serve` or `core` arguments, engine settings resolved."""
    return CoreOptions(
        host=host,
        grpc_port=args.grpc_port,
        model_paths=tuple(args.model),
        engine=_engine_settings(args),
        config_path=args.config,
        models_dirs=tuple(args.models_dir),
        auto_load=args.auto_load,
        memory_budget=args.memory_budget,
        evict_idle=args.evict_idle,
        keep_alive=args.keep_alive,
        security=_security_flags(args),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferno", description="Self-hosted LLM inference server")
    parser.add_argument("--version", action="version", version=f"inferno {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the core and the HTTP gateway together")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address both processes bind to")
    serve.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port of the gateway")
    _add_core_arguments(serve)
    _add_security_arguments(serve)

    core = commands.add_parser("core", help="run the gRPC inference core alone")
    core.add_argument("--host", default=DEFAULT_HOST)
    _add_core_arguments(core)
    _add_security_arguments(core)

    models = commands.add_parser("models", help="list, load, unload or inspect models of a running core")
    models.add_argument("action", choices=["list", "load", "unload", "status"])
    models.add_argument("model_id", nargs="?", help="the model (all actions but list)")
    models.add_argument("--core", default=f"{DEFAULT_HOST}:{DEFAULT_GRPC_PORT}", metavar="HOST:PORT")
    models.add_argument("--force", action="store_true", help="unload: cancel requests in flight at once")

    keys = commands.add_parser("keys", help="create, list or revoke API keys (database or running core)")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument(
        "argument", nargs="?", metavar="NAME|KEY_ID", help="create: the key's name; revoke: its id"
    )
    keys.add_argument(
        "--permissions", default="inference", help="comma-separated: inference,model_management,admin,*"
    )
    keys.add_argument("--expires-in", default="", help="e.g. 30d, 12h; default: never")
    keys.add_argument("--rate-limit", type=int, help="requests per minute for this key")
    keys.add_argument(
        "--core", metavar="HOST:PORT", help="use a running core (admin key from INFERNO_ADMIN_KEY)"
    )
    keys.add_argument("--config", type=Path, help="inferno.toml: its data_dir and admin key")
    _add_security_arguments(keys)

    convert = commands.add_parser("convert", help="convert a Hugging Face model folder to GGUF or EXL2")
    add_convert_arguments(convert)

    gateway = commands.add_parser("gateway", help="run the HTTP/WebSocket gateway alone")
    gateway.add_argument(
        "--core",
        default=f"{DEFAULT_HOST}:{DEFAULT_GRPC_PORT}",
        metavar="HOST:PORT",
        help="gRPC address of the running core to serve (default: %(default)s)",
    )
    gateway.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)")
    gateway.add_argument(
        "--port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (default: %(default)s)"
    )
    gateway.add_argument(
        "--grpc-port",
        type=int,
        metavar="PORT",
        help="also serve the gRPC API here, relayed to --core (Envoy's --relay: a core that dies "
        "mid-stream ends its clients' calls UNAVAILABLE, not reset); default: no relay",
    )
    gateway.add_argument("--config", type=Path, help="inferno.toml: its [security] table")
    _add_security_arguments(gateway)

    envoy = commands.add_parser(
        "envoy-config", help="write the Envoy config for cores and gateways behind it"
    )
    add_envoy_config_arguments(envoy)

    deploy = commands.add_parser(
        "deploy-config", help="write the docker-compose file and Kubernetes manifests of a fleet"
    )
    add_deploy_config_arguments(deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; a refused start (a bad setting, a port in use, a model that cannot load at start) is
    one line on stderr and exit status 2, never a traceback."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "gateway":
            _start_again_with_the_gateway_grpc_settings(sys.argv[1:] if argv is None else argv)
        return _run(args)
    except (ConfigError, StartupError) as error:
        print(f"inferno: {error}", file=sys.stderr, flush=True)
        return EXIT_STARTUP_REFUSED
    except InfernoError as error:
        print(f"inferno: {error.message}", file=sys.stderr, flush=True)
        return EXIT_STARTUP_REFUSED


def _start_again_with_the_gateway_grpc_settings(argv: list[str]) -> None:
    """A gateway started by hand, without GRPC_EXPERIMENTS, starts again in a process that has the gateway's:
    gRPC read its experiments when this one loaded it (inferno.errors imports it). One the operator set, even
    empty, is kept, as are those `inferno serve` and the deploy configs set."""
    if GRPC_EXPERIMENTS_ENV in os.environ:
        return
    os.execve(sys.executable, inferno_command(*argv), gateway_environment(os.environ))


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        from inferno.supervisor import serve

        core = core_options(args, args.host)
        gateway = GatewayOptions(
            core_address=f"{args.host}:{args.grpc_port}",
            host=args.host,
            port=args.port,
            config_path=args.config,
            security=_security_flags(args),
        )
        return serve(core, gateway)
    if args.command == "models":
        from inferno.models_cli import run_models_command

        return run_models_command(args.core, args.action, args.model_id, args.force)
    if args.command == "convert":
        from inferno.convert_cli import run_convert_command

        return run_convert_command(
            args.source, args.to, args.quant, args.out, bits=args.bits, force=args.force
        )
    if args.command == "envoy-config":
        from inferno.envoy_config import run_envoy_config_command

        return run_envoy_config_command(args)
    if args.command == "deploy-config":
        from inferno.deploy_config import run_deploy_config_command

        return run_deploy_config_command(args)
    if args.command == "keys":
        from inferno.keys_cli import KeyCommand, run_keys_command
        from inferno.security_config import load_security_config

        security = load_security_config(args.config, _security_flags(args).overrides())
        command = KeyCommand(args.action, args.argument, args.permissions, args.expires_in, args.rate_limit)
        return run_keys_command(command, security, args.core)
    if args.command in ("core", "gateway"):
        die_with_parent()
        shutdown_grace_s()  # a wrong value is reported now, not at the first SIGTERM
    if args.command == "core":
        # Resolved before the core's import, so a wrong setting is reported at once.
        options = core_options(args, args.host)
        from inferno.core.server import serve_core

        asyncio.run(serve_core(options))
        return 0
    from inferno.adapters.app import run_gateway

    run_gateway(
        GatewayOptions(
            args.core, args.host, args.port, args.config, _security_flags(args), relay_port=args.grpc_port
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
