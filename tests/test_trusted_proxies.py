"""X-Forwarded-For is believed only from trusted proxies, and only as far left as their own entries go."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferno.config_file import ConfigError
from inferno.security_config import load_security_config
from inferno.trusted_proxies import TrustedProxies

PROXIES = TrustedProxies.parse(["127.0.0.1", "10.1.0.0/16", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # Not from a proxy: the header is the caller's claim, ignored.
        ("203.0.113.5", ["198.51.100.7"], "203.0.113.5"),
        # From a proxy: the address it appended.
        ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        # Entries the client wrote sit left of it and are not believed.
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        # A chain of trusted proxies is walked past, across header lines too.
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7", "10.1.4.4"], "198.51.100.7"),
        ("127.0.0.1", ["2001:db8::1, fd00::2"], "2001:db8::1"),
        # No header, or nothing but proxies: the furthest address known.
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["10.1.0.9, 10.1.0.8"], "10.1.0.9"),
        # Not an address where the client's should be: the proxy's own.
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
    ],
)
def test_the_client_is_the_right_most_address_that_is_not_a_trusted_proxy(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    assert PROXIES.client_address(peer, forwarded_for) == client


def test_no_trusted_proxies_ignores_the_header() -> None:
    assert TrustedProxies().client_address("127.0.0.1", ["198.51.100.7"]) == "127.0.0.1"


def test_the_setting_comes_from_the_file_or_the_environment_and_bad_entries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERNO_TRUSTED_PROXIES", raising=False)
    config = tmp_path / "inferno.toml"
    config.write_text('[security]\ntrusted_proxies = ["10.0.0.0/8"]\n')
    assert load_security_config(config).trusted_proxies.trusts("10.2.3.4")
    monkeypatch.setenv("INFERNO_TRUSTED_PROXIES", "192.168.0.0/16, 127.0.0.1")
    proxies = load_security_config(config).trusted_proxies
    assert proxies.trusts("127.0.0.1") and proxies.trusts("192.168.9.9") and not proxies.trusts("10.2.3.4")
    monkeypatch.setenv("INFERNO_TRUSTED_PROXIES", "10.0.0.0/8,envoy")
    with pytest.raises(ConfigError, match="trusted_proxies: 'envoy' is not an IP address or network"):
        load_security_config(None)
