"""The engine contract suite's targets: every engine serves the same gRPC and HTTP tests.

Here: the scripted fake engine in both shapes (exact outputs known) and llama.cpp on the embedded model. On a
CUDA machine `--core-address HOST:PORT --model-id ID --engine exllamav2` points the gRPC half at a running
core instead (tests/gpu runs it that way against ExLlamaV2).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.registry import LLAMACPP, PLUGINS_VARIABLE, capabilities_of
from inferno.core.tools.grammar import (
    CALL_ARGUMENTS_PREFIX,
    CALL_NAME_PREFIX,
    CALL_SUFFIX,
    CALLS_PREFIX,
    CALLS_SUFFIX,
)
from tests.servers import RunningServer, running_inferno

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTED_ENGINES = {
    "scripted-batch": "tests.scripted_engines.batch",
    "scripted-self": "tests.scripted_engines.self_scheduled",
}
# What the scripted model says: multi-byte characters split across its one-byte tokens, and a tool call
# in the layout the tool-call parser follows when the prompt offers get_weather.
SCRIPTED_REPLY = "Bonjour! Le café ☕ est prêt, and the answer is 42. Voilà, c'est tout."
SCRIPTED_TOOL_CALL = (
    f"{CALLS_PREFIX}{CALL_NAME_PREFIX}get_weather{CALL_ARGUMENTS_PREFIX}"
    f'{{"city": "Paris"}}{CALL_SUFFIX}{CALLS_SUFFIX}'
)


@dataclass(frozen=True)
class ContractTarget:
    name: str
    engine: str
    model_id: str
    grpc_target: str
    # None when only the core is reachable (an external core).
    base_url: str | None
    # The exact reply, for engines whose output is known in advance.
    scripted_reply: str | None = None

    @property
    def capabilities(self) -> EngineCapabilities:
        if self.engine in SCRIPTED_ENGINES:  # plugins of the server process, not of this one
            capabilities: EngineCapabilities = importlib.import_module(
                SCRIPTED_ENGINES[self.engine]
            ).CAPABILITIES
            return capabilities
        return capabilities_of(self.engine)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "engine contract suite against an external core")
    group.addoption("--core-address", default=None, help="HOST:PORT of a running inferno core")
    group.addoption("--model-id", default=None, help="the model of that core to test")
    group.addoption("--engine", default="exllamav2", help="the engine serving that model")


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name, default=None)
    return str(value) if value is not None else None


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One `inferno serve` serving the scripted model through both fake engines."""
    root = tmp_path_factory.mktemp("scripted")
    models = root / "models"
    models.mkdir()
    script = {
        "default": SCRIPTED_REPLY,
        "rules": [{"when": "get_weather", "reply": SCRIPTED_TOOL_CALL}],
        "delay_s": 0.01,
    }
    (models / "scripted.script.json").write_text(json.dumps(script))
    served = [(name, "scripted", name) for name in SCRIPTED_ENGINES]
    with running_scripted_inferno(root, served, "parallel = 4\n") as running:
        yield running


@contextmanager
def running_scripted_inferno(
    root: Path, served: list[tuple[str, str, str]], model_settings: str = ""
) -> Iterator[RunningServer]:
    """`inferno serve` on the scripted engines: served is (model id, script name in root/models, engine)
    per model, each loaded at start with model_settings (TOML lines) added to its entry."""
    entries = "".join(
        f'[[models]]\nid = "{model}"\npath = "{script}.script.json"\nengine = "{engine}"\nload = true\n'
        f"{model_settings}\n"
        for model, script, engine in served
    )
    config = root / "inferno.toml"
    config.write_text(f'[server]\nmodels_dirs = ["{root / "models"}"]\n\n{entries}')
    env = {
        PLUGINS_VARIABLE: ",".join(f"{name}={module}" for name, module in SCRIPTED_ENGINES.items()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with running_inferno("--config", str(config), env=env) as running:
        yield running


def _targets(config: pytest.Config) -> list[str]:
    if _option(config, "--core-address"):
        return ["external"]
    return [*SCRIPTED_ENGINES, LLAMACPP]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", _targets(metafunc.config), indirect=True, scope="session")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> ContractTarget:
    name = str(request.param)
    config = request.config
    if name == "external":
        address, model_id = _option(config, "--core-address"), _option(config, "--model-id")
        assert address and model_id, "--core-address needs --model-id"
        return ContractTarget(name, str(_option(config, "--engine")), model_id, address, None)
    if name in SCRIPTED_ENGINES:
        server: RunningServer = request.getfixturevalue("scripted_server")
        return ContractTarget(name, name, name, server.grpc_target, server.base_url, SCRIPTED_REPLY)
    server = request.getfixturevalue("server")
    model_id = str(request.getfixturevalue("model_id"))
    return ContractTarget(name, LLAMACPP, model_id, server.grpc_target, server.base_url)


@pytest.fixture(scope="session")
def channel(target: ContractTarget) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target.grpc_target) as channel:
        yield channel
