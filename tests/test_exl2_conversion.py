"""Conversion to EXL2: refused with the precise reason where ExLlamaV2 or CUDA is missing (over REST and the
CLI), bits validated, and the job path run for real with a stand-in for ExLlamaV2's converter: a script that
takes the real converter's arguments, prints its status lines and writes a model folder, so progress,
cancellation (the whole process group), failures, output registration and job states are all exercised."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferno.convert_cli import add_convert_arguments, run_convert_command
from inferno.core.convert import exl2
from inferno.core.convert.jobs import ConversionJob, JobRunner, JobStatus, JobStore
from inferno.errors import InfernoError
from tests.tiny_llama import write_tiny_llama

UNAVAILABLE = exl2.exl2_available()
needs_no_exl2 = pytest.mark.skipif(UNAVAILABLE is None, reason="ExLlamaV2 and CUDA are both here")

# Behaves like `python -m exllamav2.conversion.convert_exl2` on a tiny model, in its output format.
# STAND_IN_MODE: ok; hang (blocks while measuring, with a child process in its group); error (a "##" line,
# exit 0, as the real one does); crash (a traceback, exit 1); orphan (leaves a child holding its stdout).
# Hang and orphan write its and its child's pids to STAND_IN_PIDS.
STAND_IN = textwrap.dedent(
    """
    import argparse, json, os, shutil, subprocess, sys, time
    import numpy as np
    from safetensors.numpy import save_file

    parser = argparse.ArgumentParser()
    for short, long in [("-i", "--in_dir"), ("-o", "--out_dir"), ("-cf", "--compile_full")]:
        parser.add_argument(short, long, required=True)
    parser.add_argument("-b", "--bits", type=float, required=True)
    parser.add_argument("-hb", "--head_bits", type=int, required=True)
    parser.add_argument("-nr", "--no_resume", action="store_true")
    parser.add_argument("-so", "--status_output", action="store_true")
    args = parser.parse_args()
    assert args.no_resume and args.status_output and args.head_bits in (2, 3, 4, 5, 6, 8)
    mode = os.environ.get("STAND_IN_MODE", "ok")
    pids = [os.getpid()]

    def status(stage, done, total):
        print("[STATUS]" + json.dumps({"stage": stage, "completion": round(done / total, 4)}) + "[/STATUS]")

    os.makedirs(args.out_dir, exist_ok=True)
    print(" -- Beginning new job")
    print(f" -- Input: {args.in_dir}")
    print(f" -- Target bits per weight: {args.bits} (decoder), {args.head_bits} (head)")
    print(" -- Tokenizing samples (measurement)...")
    status("Tokenizing (1)", 0, 1); status("Tokenizing (1)", 1, 1)
    print(" -- Token embeddings (measurement)...")
    status("Embeddings", 0, 1); status("Embeddings", 1, 1)
    print(" -- Measuring quantization impact...")
    for layer in range(4):
        status("Measuring", layer, 4)
        print(f" -- Layer: model.layers.{layer // 2} ({'Attention' if layer % 2 == 0 else 'MLP'})")
        if mode == "hang" and layer == 2:
            pids.append(subprocess.Popen(["sleep", "300"]).pid)
            open(os.environ["STAND_IN_PIDS"], "w").write(json.dumps(pids))
            time.sleep(300)
        if mode == "error" and layer == 1:
            print(" ## Measurement/inference error (1)")
            sys.exit()
        if mode == "crash" and layer == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
    status("Measuring", 4, 4)
    measurement = os.path.join(args.out_dir, "measurement.json")
    json.dump({"measurement": {}, "last_module_idx": 4}, open(measurement, "w"))
    print(" -- Optimizing...")
    for step in range(1, 4):
        status("Optimizing", step, 3)
    print(" -- Tokenizing samples...")
    status("Tokenizing (2)", 0, 1); status("Tokenizing (2)", 1, 1)
    print(" -- Token embeddings again...")
    status("Embeddings", 0, 1); status("Embeddings", 1, 1)
    print(" -- Quantizing...")
    for layer in range(4):
        status("Quantizing", layer, 4)
        print(f" -- Layer: model.layers.{layer // 2} ({'Attention' if layer % 2 == 0 else 'MLP'})")
    status("Quantizing", 4, 4)
    print(" -- Compiling output file...")
    os.makedirs(args.compile_full, exist_ok=True)
    save_file({f"model.layers.{i}.q_weight": np.zeros((16, 8), np.int32) for i in range(3)},
              os.path.join(args.compile_full, "output.safetensors"))
    for name in os.listdir(args.in_dir):
        if not name.endswith(".safetensors"):
            shutil.copy(os.path.join(args.in_dir, name), os.path.join(args.compile_full, name))
    config_path = os.path.join(args.compile_full, "config.json")
    config = json.load(open(config_path))
    config["quantization_config"] = {"quant_method": "exl2", "bits": args.bits, "head_bits": args.head_bits}
    json.dump(config, open(config_path, "w"))
    status("Compiling", 1, 1)
    if mode == "orphan":  # a child that outlives it, holding its stdout open
        pids.append(subprocess.Popen(["sleep", "300"]).pid)
        open(os.environ["STAND_IN_PIDS"], "w").write(json.dumps(pids))
    print(" -- Finished")
    """
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("exl2") / "tiny-llama")


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ExLlamaV2 and CUDA 'available', and the converter's command running the stand-in with the real
    arguments. Returns where the stand-in writes its pids (hang mode)."""
    script = tmp_path / "convert_exl2_stand_in.py"
    script.write_text(STAND_IN)
    real_command = exl2.converter_command

    def command(source: Path, work_dir: Path, output_dir: Path, bits: float, head_bits: int) -> list[str]:
        real = real_command(source, work_dir, output_dir, bits, head_bits)
        assert real[:3] == [sys.executable, "-m", "exllamav2.conversion.convert_exl2"]
        return [sys.executable, str(script), *real[3:]]

    monkeypatch.setattr(exl2, "converter_command", command)
    monkeypatch.setattr(exl2, "exl2_available", lambda: None)
    pids = tmp_path / "pids.json"
    monkeypatch.setenv("STAND_IN_PIDS", str(pids))
    return pids


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[tuple[JobRunner, list[Path]]]:
    registered: list[Path] = []

    def register(path: Path) -> str:
        registered.append(path)
        return path.name

    job_runner = JobRunner(JobStore(tmp_path / "db.sqlite"), register)
    yield job_runner, registered
    job_runner.close()


def _follow(runner: JobRunner, job_id: str, timeout: float = 60) -> list[ConversionJob]:
    seen = [runner.get(job_id)]
    deadline = time.monotonic() + timeout
    while seen[-1].status in (JobStatus.QUEUED, JobStatus.PROCESSING) and time.monotonic() < deadline:
        time.sleep(0.005)
        seen.append(runner.get(job_id))
    return seen


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# --- refusals ----------------------------------------------------------------------------------------------


def test_availability_names_a_missing_exllamav2_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def without_exllamav2(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        return None if name == "exllamav2" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_exllamav2)
    reason = exl2.exl2_available()
    assert reason is not None and "pip install 'inferno-server[exllamav2]'" in reason
    assert "exllamav2" not in sys.modules


def test_availability_names_a_missing_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def installed(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        return (
            importlib.machinery.ModuleSpec(name, None)
            if name == "exllamav2"
            else real_find_spec(name, package)
        )

    def without_torch(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        return None if name == "torch" else installed(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_torch)
    assert exl2.exl2_available() == "no CUDA device (torch is not installed)"
    monkeypatch.setattr(importlib.util, "find_spec", installed)
    import torch

    if torch.cuda.is_available():
        assert exl2.exl2_available() is None
    else:
        reason = exl2.exl2_available()
        assert reason is not None and reason.startswith("no CUDA device") and "pip install" not in reason


def test_conversion_code_imports_neither_torch_nor_exllamav2() -> None:
    code = (
        "import sys, inferno.core.convert.exl2, inferno.core.convert.jobs, inferno.core.services.conversion, "
        "inferno.convert_cli; print(sorted({'torch', 'exllamav2', 'pandas'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


@needs_no_exl2
def test_rest_refuses_exl2_naming_what_is_missing(managed_http: httpx.Client, managed_root: Path) -> None:
    if not (managed_root / "models" / "tiny-llama").exists():
        write_tiny_llama(managed_root / "models" / "tiny-llama")
    reply = managed_http.post(
        "/v1/convert", json={"source_model": "tiny-llama", "target_format": "exl2", "quantization": "4.0bpw"}
    )
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error["code"] == "gpu_unavailable"
    assert error["details"]["reason"] == UNAVAILABLE and UNAVAILABLE in error["message"]
    assert not (managed_root / "models" / "tiny-llama-exl2-4.0bpw").exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"quantization": "9.0"}, "quantization"),
        ({"quantization": "1.5bpw"}, "quantization"),
        ({"quantization": "q4_0"}, "quantization"),
        ({"output_file": "tiny.gguf"}, "output_file"),
        ({"output_file": "../escape"}, "output_file"),
        ({"output_file": "tiny-llama"}, "output_file"),
        ({"source_model": "bin-only"}, "source_model"),
    ],
)
def test_rest_refuses_bad_exl2_parameters_first(
    managed_http: httpx.Client, managed_root: Path, body: dict[str, str], param: str
) -> None:
    models = managed_root / "models"
    if not (models / "tiny-llama").exists():
        write_tiny_llama(models / "tiny-llama")
    (models / "bin-only").mkdir(exist_ok=True)
    (models / "bin-only" / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (models / "bin-only" / "pytorch_model.bin").write_bytes(b"")
    reply = managed_http.post(
        "/v1/convert", json={"source_model": "tiny-llama", "target_format": "exl2", **body}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["details"]["param"] == param


@needs_no_exl2
def test_cli_refuses_exl2_naming_what_is_missing(tiny: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferno.cli",
            "convert",
            str(tiny),
            "--to",
            "exl2",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert (
        f"gpu_unavailable: EXL2 conversion runs ExLlamaV2 on a CUDA GPU, and cannot here: {UNAVAILABLE}"
        in (done.stderr)
    )
    assert not (tmp_path / "o").exists()


def _cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = run_convert_command(args.source, args.to, args.quant, args.out, out, bits=args.bits)
    return code, out.getvalue()


def test_cli_takes_bits_only_for_exl2(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(str(tiny), "--bits", "4.0", "--out", str(tmp_path / "x.gguf"))[0] == 1
    assert "invalid_parameters: --bits is for --to exl2" in capsys.readouterr().err
    assert _cli(str(tiny), "--to", "exl2", "--bits", "8.5", "--out", str(tmp_path / "x"))[0] == 1
    assert "--bits must be from 2.0 to 8.0" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x").exists()


def test_cli_converts_to_exl2_with_a_progress_bar(tiny: Path, tmp_path: Path, stand_in: Path) -> None:
    code, printed = _cli(str(tiny), "--to", "exl2", "--bits", "3.5", "--out", str(tmp_path / "tiny-3.5"))
    assert code == 0, printed
    assert "measuring" in printed and "quantizing" in printed and "100.0% done" in printed
    assert f"{tmp_path / 'tiny-3.5'} (LlamaForCausalLM, 3.5bpw)" in printed and "3 tensors" in printed
    config = json.loads((tmp_path / "tiny-3.5" / "config.json").read_text())
    assert config["quantization_config"]["bits"] == 3.5


# --- bits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bits"), [("4", 4.0), ("4.0", 4.0), ("4.0bpw", 4.0), (" 6.5BPW ", 6.5), ("2", 2.0), ("8.0", 8.0)]
)
def test_bits_are_read_from_a_number_or_bpw(text: str, bits: float) -> None:
    assert exl2.parse_bits(text) == bits
    assert exl2.bits_label(bits) == f"{bits}bpw"


@pytest.mark.parametrize("text", ["1.99", "8.01", "q4_0", "", "nan", "inf", "4.0 bits", "-4"])
def test_bits_outside_two_to_eight_are_refused_naming_quantization(text: str) -> None:
    with pytest.raises(InfernoError) as caught:
        exl2.parse_bits(text)
    assert caught.value.code == "invalid_parameters" and caught.value.details == {"param": "quantization"}
    assert "2.0 to 8.0" in caught.value.message


def test_progress_follows_the_converters_stages_in_order() -> None:
    tracker = exl2.StageTracker()
    fractions = []
    stages = [
        ("Tokenizing (1)", 1),
        ("Embeddings", 1),
        ("Measuring", 0.5),
        ("Measuring", 1),
        ("Optimizing", 1),
    ]
    stages += [
        ("Tokenizing (2)", 1),
        ("Embeddings", 0),
        ("Embeddings", 1),
        ("Quantizing", 0.5),
        ("Compiling", 1),
    ]
    for stage, completion in stages:
        assert tracker.update(f'[STATUS]{{"stage": "{stage}", "completion": {completion}}}[/STATUS]\n')
        fractions.append(tracker.fraction)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert fractions[2] == pytest.approx(0.02 + 0.43 / 2)  # halfway through measuring
    assert fractions[7] == pytest.approx(0.50)  # the second Embeddings is the one after Tokenizing (2)
    assert not tracker.update(" -- Layer: model.layers.0 (Attention)\n")


# --- the job runner with the stand-in ---------------------------------------------------------------------


def test_an_exl2_job_runs_the_converter_and_registers_the_folder(
    tiny: Path, tmp_path: Path, stand_in: Path, runner: tuple[JobRunner, list[Path]]
) -> None:
    job_runner, registered = runner
    output = tmp_path / "models" / "tiny-exl2"
    job = job_runner.submit(tiny, "tiny-llama", output, "tiny-exl2", "exl2", "5bpw")
    assert job.status is JobStatus.QUEUED and job.quantization == "5.0bpw" and job.target_format == "exl2"
    seen = _follow(job_runner, job.job_id)
    done = seen[-1]
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.progress == 100.0 and done.model_id == "tiny-exl2" and registered == [output]
    assert done.output_file == "tiny-exl2" and done.source_bytes > 0 and done.output_bytes > 0
    progress = [j.progress for j in seen if j.status is JobStatus.PROCESSING]
    assert progress == sorted(progress)
    config = json.loads((output / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "exl2", "bits": 5.0, "head_bits": 6}
    assert (output / "output.safetensors").is_file() and (output / "tokenizer.json").is_file()
    assert (output / "measurement.json").is_file()
    assert sorted(p.name for p in output.parent.iterdir()) == ["tiny-exl2"]  # no work or partial folders left
    assert job_runner.get(job.job_id) == done  # and the database agrees


def test_cancelling_an_exl2_job_kills_the_converters_process_group(
    tiny: Path,
    tmp_path: Path,
    stand_in: Path,
    runner: tuple[JobRunner, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAND_IN_MODE", "hang")
    job_runner, registered = runner
    output = tmp_path / "models" / "tiny-exl2"
    job = job_runner.submit(tiny, "tiny-llama", output, "tiny-exl2", "exl2", "4.0")
    deadline = time.monotonic() + 60
    while not stand_in.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = json.loads(stand_in.read_text())
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    running = job_runner.get(job.job_id)
    assert running.status is JobStatus.PROCESSING and 2 < running.progress < 50  # measuring
    asked = time.monotonic()
    job_runner.cancel(job.job_id)
    done = _follow(job_runner, job.job_id, timeout=30)[-1]
    assert done.status is JobStatus.CANCELLED and time.monotonic() - asked < 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in pids)
    assert registered == [] and list(output.parent.iterdir()) == []  # no output, work or partial folder


def test_a_child_the_converter_leaves_behind_does_not_hold_up_the_job(
    tiny: Path,
    tmp_path: Path,
    stand_in: Path,
    runner: tuple[JobRunner, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAND_IN_MODE", "orphan")
    job_runner, registered = runner
    output = tmp_path / "models" / "tiny-exl2"
    job = job_runner.submit(tiny, "tiny-llama", output, "tiny-exl2", "exl2", "4.0")
    try:
        done = _follow(job_runner, job.job_id, timeout=30)[-1]
        assert done.status is JobStatus.COMPLETED and registered == [output]
    finally:
        os.kill(json.loads(stand_in.read_text())[-1], signal.SIGKILL)


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("error", "(exit status 0): ## Measurement/inference error (1)"),
        ("crash", "(exit status 1): RuntimeError: CUDA error: an illegal memory access was encountered"),
    ],
)
def test_a_failing_converter_fails_the_job_with_its_words(
    tiny: Path,
    tmp_path: Path,
    stand_in: Path,
    runner: tuple[JobRunner, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    said: str,
) -> None:
    monkeypatch.setenv("STAND_IN_MODE", mode)
    job_runner, registered = runner
    output = tmp_path / "models" / "tiny-exl2"
    job = job_runner.submit(tiny, "tiny-llama", output, "tiny-exl2", "exl2", "4.0")
    done = _follow(job_runner, job.job_id)[-1]
    assert done.status is JobStatus.FAILED and said in done.error, done.error
    assert registered == [] and list(output.parent.iterdir()) == []


def test_an_existing_exl2_output_is_refused_before_queueing(
    tiny: Path, tmp_path: Path, stand_in: Path, runner: tuple[JobRunner, list[Path]]
) -> None:
    job_runner, _ = runner
    (tmp_path / "taken").mkdir()
    with pytest.raises(InfernoError) as caught:
        job_runner.submit(tiny, "tiny-llama", tmp_path / "taken", "taken", "exl2", "4.0")
    assert caught.value.details == {"param": "output_file"}
    assert job_runner.all() == []


@needs_no_exl2
def test_the_runner_refuses_exl2_without_the_gpu_or_extra(tiny: Path, tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path / "db.sqlite"), lambda path: path.name)
    with pytest.raises(InfernoError) as caught:
        runner.submit(tiny, "tiny", tmp_path / "out", "out", "exl2", "4.0")
    assert caught.value.code == "gpu_unavailable" and caught.value.details == {"reason": UNAVAILABLE}
    assert runner.all() == []
    runner.close()
