"""Start-up and shutdown facts shared by the supervisor, the core and the gateway: how a child is started,
the exit status of a refused start, the shutdown grace period, the port check and dying with the parent."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys

# A child that exits with this refused to start (port in use, bad setting, unusable model): restarting it
# would only fail the same way, so the supervisor stops instead. argparse and ConfigError use it too.
EXIT_STARTUP_REFUSED = 2

SHUTDOWN_GRACE_ENV = "INFERNO_SHUTDOWN_GRACE_S"
DEFAULT_SHUTDOWN_GRACE_S = 10.0
SUPERVISOR_PID_ENV = "INFERNO_SUPERVISOR_PID"

_PR_SET_PDEATHSIG = 1


def inferno_command(*arguments: str) -> list[str]:
    """The `inferno` CLI with arguments, run by this interpreter: how `inferno serve` starts its core and
    gateway, and how a gateway starts itself again."""
    return [sys.executable, "-m", "inferno.cli", *arguments]


class StartupError(Exception):
    """A process cannot start; the message is the one line the user sees (no traceback)."""


def shutdown_grace_s() -> float:
    """How long in-flight streams may run after SIGTERM before they end with an error event
    (INFERNO_SHUTDOWN_GRACE_S, default 10 s)."""
    raw = os.environ.get(SHUTDOWN_GRACE_ENV, "")
    if not raw:
        return DEFAULT_SHUTDOWN_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise StartupError(f"{SHUTDOWN_GRACE_ENV}: {raw!r} is not a number of seconds between 0 and 3600")
    return value


def check_port_free(host: str, port: int, what: str) -> None:
    """Raises StartupError naming the port when something already listens on host:port.

    SO_REUSEADDR as servers set it, so a port in TIME_WAIT counts as free; no SO_REUSEPORT, so a listener that
    set it (another core) still counts as taken.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"{what} address {host}:{port} cannot be resolved: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise port_error(host, port, what, error) from None


def port_error(host: str, port: int, what: str, error: OSError) -> StartupError:
    """The one line for a port that cannot be bound."""
    if error.errno == errno.EADDRINUSE:
        return StartupError(
            f"{what} port {port} on {host} is already in use; stop what uses it or pick another"
        )
    if error.errno == errno.EACCES:
        return StartupError(f"{what} port {port} on {host} needs privileges to bind; pick a port above 1023")
    reason = error.strerror or str(error)
    return StartupError(f"{what} cannot listen on {host}:{port}: {reason}")


def die_with_parent() -> None:
    """In a child of `inferno serve` (SUPERVISOR_PID_ENV set): ask Linux for SIGTERM when the supervisor dies,
    so a kill -9 of the supervisor leaves no orphan serving; exit at once if it is already gone."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The supervisor may have died between our fork and the prctl: then no signal will come.
    if str(os.getppid()) != supervisor:
        raise SystemExit(0)
