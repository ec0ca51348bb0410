"""Which CPU path llama.cpp loads weights with: repacked into the fast kernels' layouts (extra buffer types:
interleaved blocks, AMX tiles), or left as they are in the file.

Some machines advertise instructions they cannot run: a VM whose CPU lists AMX and whose kernel grants the
tile permission, under a hypervisor that does not run tile instructions. There llama.cpp dies by SIGILL on
the first prompt. So before the first model serves, a child process tries the fast path (cpu_probe.py); if
the child dies by a signal, models load without repacking. The verdict is cached per machine and build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from inferno.config_file import ConfigError
from inferno.core.engines.llamacpp.cpu_probe import SIMULATE_CRASH_ENV

log = logging.getLogger(__name__)

# auto (probe, the default), on (repack without probing) or off (never repack).
REPACK_ENV = "INFERNO_CPU_REPACK"
_REPACK_CHOICES = ("auto", "on", "off")
_CACHE_FILE = "cpu-path.json"
# A healthy probe takes well under a second; this bounds a machine so loaded that it does not finish.
_PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CpuPath:
    """How llama.cpp loads weights on this machine, and why."""

    repack: bool
    reason: str
    # The CPU features llama.cpp's build uses here ("AVX2 AVX512 AMX_INT8 ..."), from llama_print_system_info.
    features: str
    # Seconds the probe took; 0 when the verdict came from the cache or the setting.
    probe_seconds: float = 0.0

    @property
    def device(self) -> str:
        """Short, for model status's device: "cpu, weight repacking on (probe passed)". The machine's choice:
        llama.cpp then repacks the weight types it has repacked kernels for, and loads others as they are."""
        return f"cpu, weight repacking {'on' if self.repack else 'off'} ({self.reason})"


_lock = threading.Lock()
_chosen: CpuPath | None = None


def current_cpu_path() -> CpuPath | None:
    """The choice this process made, once a llama.cpp model has loaded (for status reporting)."""
    return _chosen


def process_cpu_path() -> CpuPath:
    """The choice for this process: made on the first call (probing if need be), then the same one."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = choose_cpu_path()
        return _chosen


def choose_cpu_path(cache_dir: Path | None = None) -> CpuPath:
    """INFERNO_CPU_REPACK=on/off decides outright; auto (the default) takes the cached verdict for this
    machine and llama.cpp build, or probes in a child process and caches a clear verdict. Logs one line."""
    setting = os.environ.get(REPACK_ENV, "auto").strip().lower() or "auto"
    if setting not in _REPACK_CHOICES:
        raise ConfigError(f"{REPACK_ENV}={setting!r}: expected one of {', '.join(_REPACK_CHOICES)}")
    features = cpu_features()
    if setting != "auto":
        path = CpuPath(setting == "on", f"{REPACK_ENV}={setting}", features)
        _log_choice(path, "set")
        return path
    cache = (cache_dir or default_cache_dir()) / _CACHE_FILE
    key = _cache_key()
    cached = _read_cache(cache).get(key)
    repack = cached.get("repack") if isinstance(cached, dict) else None
    if isinstance(repack, bool) and cached is not None:
        path = CpuPath(repack, str(cached.get("reason", "")), features)
        _log_choice(path, "cached")
        return path
    path, conclusive = _probe(features)
    if conclusive:
        _write_cache(cache, key, path)
    _log_choice(path, f"probed in {path.probe_seconds:.2f} s")
    return path


def apply_to_llama_cpp_python(repack: bool) -> None:
    """Makes llama-cpp-python's own loaders in this process (llama_cpp.Llama and its server, which have no
    option for it) load with repack on or off, so peers and reference models take the same path as ours."""
    import llama_cpp.llama_cpp as llama

    defaults = getattr(llama, "_inferno_original_default_params", llama.llama_model_default_params)

    def model_default_params() -> llama.llama_model_params:
        params = defaults()
        params.use_extra_bufts = repack
        return params

    llama._inferno_original_default_params = defaults  # type: ignore[attr-defined]
    llama.llama_model_default_params = model_default_params


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/inferno, else ~/.cache/inferno: the verdict belongs to the machine, not to a server."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "inferno"


def cpu_features() -> str:
    """The CPU features llama.cpp reports as on, space separated ("SSE3 AVX2 AVX512 REPACK")."""
    import llama_cpp.llama_cpp as llama

    info = llama.llama_print_system_info().decode(errors="replace")
    parts = info.split("CPU :")
    cpu_part = parts[1] if len(parts) > 1 else ""
    names = (item.split("=")[0].strip() for item in cpu_part.split("|") if item.strip().endswith("= 1"))
    return " ".join(dict.fromkeys(names))


def _probe(features: str) -> tuple[CpuPath, bool]:
    """Runs the fast path in a child process: the choice, and whether the verdict is clear enough to cache
    (the child ran, or it died by a signal)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="inferno-cpu-probe-") as folder:
        command = [sys.executable, "-m", "inferno.core.engines.llamacpp.cpu_probe", folder]
        try:
            done = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            reason = f"the probe did not finish in {_PROBE_TIMEOUT_S:.0f} s; fast path kept"
            return CpuPath(True, reason, features, time.monotonic() - started), False
    seconds = time.monotonic() - started
    if done.returncode < 0:
        reason = f"the fast path died with {_signal_name(-done.returncode)} in a probe"
        return CpuPath(False, reason, features, seconds), True
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        reason = f"the probe failed (exit {done.returncode}: {tail[0]}); fast path kept"
        return CpuPath(True, reason, features, seconds), False
    return CpuPath(True, "probe passed", features, seconds), True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _cache_key() -> str:
    """Machine (CPU model, its flags, the kernel) and build (llama-cpp-python's version and its libraries)."""
    import llama_cpp

    model_name, flags = _cpuinfo()
    library_dir = Path(llama_cpp.__file__).parent / "lib"
    libraries = []
    for name in ("libggml-cpu.so", "libggml-base.so", "libllama.so"):
        library = library_dir / name
        if library.exists():
            stat = library.stat()
            libraries.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts = [
        platform.machine(),
        model_name,
        hashlib.sha256(flags.encode()).hexdigest()[:16],
        platform.release(),
        getattr(llama_cpp, "__version__", "?"),
        *libraries,
        # A simulated crash (tests) must not leave its verdict for real runs.
        os.environ.get(SIMULATE_CRASH_ENV, ""),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _cpuinfo() -> tuple[str, str]:
    model_name, flags = platform.processor(), ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model_name, flags
    for line in text.splitlines():
        field, _, value = line.partition(":")
        field = field.strip()
        if field == "model name" and not model_name:
            model_name = value.strip()
        elif field in ("flags", "Features") and not flags:
            flags = value.strip()
    return model_name, flags


def _read_cache(cache: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache: Path, key: str, path: CpuPath) -> None:
    entries = _read_cache(cache)
    entries[key] = {k: v for k, v in asdict(path).items() if k in ("repack", "reason", "features")}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(entries, indent=1))
        os.replace(partial, cache)
    except OSError as error:
        # The verdict still holds for this process; the next one probes again.
        log.debug("could not cache the CPU path in %s: %s", cache, error)


def _log_choice(path: CpuPath, source: str) -> None:
    if path.repack:
        log.info(
            "llama.cpp CPU path: weight repacking on (%s; %s); CPU %s", path.reason, source, path.features
        )
    else:
        log.warning(
            "llama.cpp CPU path: weight repacking off, slower prompts (%s; %s); CPU %s",
            path.reason,
            source,
            path.features,
        )
