"""What a new user meets on the command line: `inferno convert` keeps an existing output unless --force,
writes plain progress lines off a terminal, and shows its defaults; errors name the setting or flag that
fixes them (conversion with no models directory, key management without the admin key)."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inferno.convert_cli import DEFAULT_EXL2_BITS, run_convert_command
from inferno.core.convert import exl2
from inferno.progress import ProgressLine
from tests.security_fixtures import SecuredServer
from tests.test_exl2_conversion import stand_in  # noqa: F401  (a fixture: ExLlamaV2's converter stood in)
from tests.tiny_llama import write_tiny_llama

GGUF_MAGIC = b"GGUF"
PLAIN_PROGRESS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d{1,3}\.\d% \S.*$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("cli-messages") / "tiny-llama")


def _inferno(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferno.cli", *args],
        capture_output=True, text=True, timeout=180, check=False, cwd=cwd, env=env or os.environ.copy(),
    )  # fmt: skip


# --- convert: existing outputs ------------------------------------------------------------------------------


def test_convert_refuses_to_overwrite_a_file_without_force(tiny: Path, tmp_path: Path) -> None:
    existing = tmp_path / "model.gguf"
    existing.write_bytes(b"keep me")
    done = _inferno("convert", str(tiny), "--out", str(existing))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"inferno convert: invalid_parameters: {existing} already exists; pass --force to replace it"
    ]
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


def test_convert_with_force_replaces_the_file(tiny: Path, tmp_path: Path) -> None:
    existing = tmp_path / "model.gguf"
    existing.write_bytes(b"old")
    done = _inferno("convert", str(tiny), "--quant", "q8_0", "--out", str(existing), "--force")
    assert done.returncode == 0, done.stderr
    assert existing.read_bytes()[:4] == GGUF_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


def test_convert_refuses_a_folder_as_the_gguf_output_even_with_force(tiny: Path, tmp_path: Path) -> None:
    done = _inferno("convert", str(tiny), "--out", str(tmp_path), "--force")
    assert done.returncode == 1
    assert f"{tmp_path} is a folder; --out takes the GGUF file to write" in done.stderr


def test_convert_refuses_to_overwrite_an_exl2_folder_without_force(tiny: Path, tmp_path: Path) -> None:
    existing = tmp_path / "tiny-exl2"
    existing.mkdir()
    (existing / "old.txt").write_text("keep me")
    done = _inferno("convert", str(tiny), "--to", "exl2", "--out", str(existing))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"inferno convert: invalid_parameters: {existing} already exists; pass --force to replace it"
    ]
    assert [p.name for p in existing.iterdir()] == ["old.txt"]


def test_convert_with_force_replaces_an_exl2_folder_once_the_new_one_is_complete(
    tiny: Path,
    tmp_path: Path,
    stand_in: Path,  # noqa: F811
) -> None:
    existing = tmp_path / "out" / "tiny-exl2"
    existing.mkdir(parents=True)
    (existing / "old.txt").write_text("old")
    printed = io.StringIO()
    code = run_convert_command(tiny, "exl2", "f16", existing, printed, bits=3.0, force=True)
    assert code == 0, printed.getvalue()
    assert (existing / "config.json").is_file() and not (existing / "old.txt").exists()
    assert [p.name for p in existing.parent.iterdir()] == ["tiny-exl2"]  # no work folders left beside it
    assert f"{existing} (LlamaForCausalLM, 3.0bpw)" in printed.getvalue()


def test_a_failed_forced_exl2_conversion_keeps_the_old_folder(
    tiny: Path,
    tmp_path: Path,
    stand_in: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STAND_IN_MODE", "crash")
    existing = tmp_path / "out" / "tiny-exl2"
    existing.mkdir(parents=True)
    (existing / "old.txt").write_text("old")
    code = run_convert_command(tiny, "exl2", "f16", existing, io.StringIO(), bits=3.0, force=True)
    assert code == 1 and "inferno convert: internal_error" in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["old.txt"]
    assert [p.name for p in existing.parent.iterdir()] == ["tiny-exl2"]


# --- convert: progress --------------------------------------------------------------------------------------


def test_convert_prints_plain_progress_lines_when_not_on_a_terminal(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.gguf"
    done = _inferno("convert", str(tiny), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout
    lines = done.stdout.splitlines()
    progress, summary = lines[:-1], lines[-1]
    assert all(PLAIN_PROGRESS.match(line) for line in progress), progress
    # A line per phase and per tenth of the work, not one per tensor.
    assert 3 <= len(progress) <= 15, progress
    assert progress[0].endswith("0.0% converting tensors") and progress[-1].endswith("100.0% done")
    assert "writing the file" in done.stdout
    assert summary.startswith(f"{out} (LlamaForCausalLM, f16)")


def test_convert_redraws_one_bar_on_a_terminal(tiny: Path, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "inferno.cli", "convert", str(tiny), "--out", str(tmp_path / "t.gguf")],
            stdout=terminal, stderr=subprocess.PIPE, timeout=180, check=False,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        printed = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            printed += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert done.returncode == 0, done.stderr
    text = printed.decode()
    assert text.count("\r[") >= 3 and "100.0% done" in text
    assert not PLAIN_PROGRESS.match(text.splitlines()[0].strip("\r"))


def test_progress_off_a_terminal_writes_a_line_per_phase_and_per_tenth() -> None:
    out = io.StringIO()
    line = ProgressLine(out, interactive=False)
    for step in range(37):
        line.update(step * 2.5, "converting tensors")
    line.update(90.0, "writing the file")
    line.update(100.0, "done")
    line.finish("done")
    tails = [text.split(" ", 2)[2] for text in out.getvalue().splitlines()]
    expected = [f"{10.0 * tenth:5.1f}% converting tensors" for tenth in range(10)]
    assert tails == [*expected, " 90.0% writing the file", "100.0% done"]


# --- help ---------------------------------------------------------------------------------------------------


def test_convert_help_shows_every_default() -> None:
    done = _inferno("convert", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps help text
    for default in ("(default: gguf)", "(default: f16)", f"(default: {DEFAULT_EXL2_BITS})", "--force"):
        assert default in text, default


def test_the_help_default_for_bits_is_the_converters_default() -> None:
    assert DEFAULT_EXL2_BITS == exl2.DEFAULT_BITS


def test_gateway_help_says_what_core_is() -> None:
    done = _inferno("gateway", "--help")
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    assert "--core HOST:PORT gRPC address of the running core to serve (default: 127.0.0.1:50051)" in text


# --- errors that name their fix -----------------------------------------------------------------------------


def test_conversion_without_a_models_directory_names_the_setting_and_the_flag(http: httpx.Client) -> None:
    reply = http.post("/v1/convert", json={"source_model": "model", "target_format": "gguf"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert "models_dirs" in error["message"] and "inferno.toml" in error["message"]
    assert "--models-dir" in error["message"]


def _keys_cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("INFERNO_ADMIN_KEY", "INFERNO_API_KEY")}


def _tls_flags(secured: SecuredServer) -> tuple[str, ...]:
    root = secured.root
    return ("--tls-cert", str(root / "cert.pem"), "--tls-key", str(root / "key.pem"))


def test_keys_against_a_server_without_the_admin_key_names_inferno_admin_key(
    secured: SecuredServer, tmp_path: Path
) -> None:
    core = ("--core", secured.server.grpc_target, *_tls_flags(secured))
    done = _inferno("keys", "list", *core, cwd=tmp_path, env=_keys_cli_env())
    assert done.returncode == 1
    (message,) = done.stderr.strip().splitlines()
    assert message.startswith("inferno keys list: authentication_failed: ")
    assert "INFERNO_ADMIN_KEY" in message and "--config" in message


def test_keys_with_a_key_lacking_admin_names_inferno_admin_key(
    secured: SecuredServer, tmp_path: Path
) -> None:
    _, secret = secured.create_key(["inference"])
    core = ("--core", secured.server.grpc_target, *_tls_flags(secured))
    done = _inferno("keys", "list", *core, cwd=tmp_path, env={**_keys_cli_env(), "INFERNO_API_KEY": secret})
    assert done.returncode == 1
    assert done.stderr.startswith("inferno keys list: permission_denied: ")
    assert "INFERNO_ADMIN_KEY" in done.stderr


def test_keys_with_the_admin_key_from_the_environment_work(secured: SecuredServer, tmp_path: Path) -> None:
    core = ("--core", secured.server.grpc_target, *_tls_flags(secured))
    env = {**_keys_cli_env(), "INFERNO_ADMIN_KEY": secured.admin_key}
    done = _inferno("keys", "list", *core, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("KEY ID")
