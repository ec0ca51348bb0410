"""Session fixtures: one real `inferno serve` (core + gateway) on free loopback ports for the whole suite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from openai import OpenAI

from inferno.core.embedded import embedded_model_path
from inferno.core.engines.llamacpp.cpu_path import apply_to_llama_cpp_python, process_cpu_path
from inferno.v1 import model_service_pb2_grpc
from tests.security_fixtures import SecuredServer, write_secured_config
from tests.servers import RunningServer, running_inferno
from tests.system_packages import ensure_debian_packages

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session", autouse=True)
def _reference_models_take_the_cores_cpu_path() -> None:
    """llama-cpp-python models the tests build as references load the way the core does: without repacked
    weights on a CPU whose fast path crashes (core/engines/llamacpp/cpu_path.py)."""
    apply_to_llama_cpp_python(process_cpu_path().repack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by playwright (installed with apt-get when missing)."""
    from playwright.sync_api import sync_playwright

    ensure_debian_packages(["chromium"], binaries=[CHROMIUM])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """`inferno serve` on the embedded model, started once for the whole suite."""
    with running_inferno() as running:
        yield running


@pytest.fixture(scope="session")
def openai_client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def grpc_channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="session")
def model_id(http: httpx.Client) -> str:
    return str(http.get("/v1/models").json()["data"][0]["id"])


MANAGED_CONFIG = """
[server]
models_dirs = ["models"]

[[models]]
id = "second"
path = "second.gguf"
context_length = 512
parallel = 2

[[models]]
id = "broken"
path = "broken.gguf"
"""


@pytest.fixture(scope="session")
def managed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The managed server's folder; its models directory is managed_root / "models"."""
    root = tmp_path_factory.mktemp("managed")
    (root / "models").mkdir()
    return root


@pytest.fixture(scope="session")
def managed_server(managed_root: Path) -> Iterator[RunningServer]:
    """`inferno serve --config` with the embedded model (loaded), a copy of it as "second" (not loaded) and a
    corrupt GGUF file as "broken"."""
    root = managed_root
    shutil.copy(embedded_model_path(), root / "models" / "second.gguf")
    (root / "models" / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 4096)
    (root / "inferno.toml").write_text(MANAGED_CONFIG)
    config = str(root / "inferno.toml")
    with running_inferno("--config", config, "--parallel", "2", "--ctx-size", "512") as running:
        yield running


@pytest.fixture(scope="session")
def managed_http(managed_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=managed_server.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def models_stub(managed_server: RunningServer) -> Iterator[model_service_pb2_grpc.ModelServiceStub]:
    with grpc.insecure_channel(managed_server.grpc_target) as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredServer]:
    """`inferno serve` with TLS, API keys, JWTs, an admin key and small limits (security_fixtures.py)."""
    root = tmp_path_factory.mktemp("secured")
    config, admin_key, hs_secret, rsa_key, ec_key = write_secured_config(root)
    args = ("--config", str(config), "--parallel", "2", "--ctx-size", "512")
    with running_inferno(
        *args, tls_ca=root / "cert.pem", env={"INFERNO_DATA_DIR": str(root / "data")}
    ) as running:
        yield SecuredServer(running, root, config, admin_key, hs_secret, rsa_key, ec_key)
