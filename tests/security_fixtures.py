"""A server with every security feature on: TLS (self-signed), API keys, JWTs (HS256 secret, RS256 PEM key,
ES256 key in a JWKS file), a bootstrap admin key from a file, and small limits the tests can reach."""

from __future__ import annotations

import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.crypto_helpers import ec_key_in_jwks, rsa_key_pair, write_self_signed_certificate
from tests.servers import RunningServer

ISSUER = "https://issuer.test"
AUDIENCE = "inferno-tests"
EC_KEY_ID = "ec-1"


@dataclass(frozen=True)
class SecuredServer:
    server: RunningServer
    root: Path
    config: Path
    admin_key: str
    hs_secret: str
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        verify = ssl.create_default_context(cafile=str(self.server.tls_ca))
        return httpx.Client(base_url=self.server.base_url, verify=verify, headers=headers, timeout=120)

    def create_key(self, permissions: list[str], **extra: Any) -> tuple[str, str]:
        """(key_id, secret) of a new key, made with the admin key."""
        with self.client(self.admin_key) as admin:
            reply = admin.post("/v1/auth/keys", json={"name": "test", "permissions": permissions, **extra})
        assert reply.status_code == 201, reply.text
        return reply.json()["key_id"], reply.json()["api_key"]

    def token(self, algorithm: str = "HS256", **claims: Any) -> str:
        """A JWT signed with the configured key for algorithm; claims override the valid defaults."""
        now = int(time.time())
        payload = {
            "sub": "user-1", "name": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5,
            "exp": now + 300, "permissions": ["inference"], **claims,
        }  # fmt: skip
        payload = {k: v for k, v in payload.items() if v is not None}
        if algorithm == "HS256":
            return jwt.encode(payload, self.hs_secret, algorithm="HS256")
        if algorithm == "RS256":
            return jwt.encode(payload, self.rsa_key, algorithm="RS256")
        return jwt.encode(payload, self.ec_key, algorithm="ES256", headers={"kid": EC_KEY_ID})


def write_secured_config(root: Path, extra: str = "") -> tuple[Path, str, str, Any, Any]:
    cert, key = write_self_signed_certificate(root)
    rsa_key, rsa_public = rsa_key_pair(root)
    ec_key, jwks = ec_key_in_jwks(root, EC_KEY_ID)
    admin_key = "admin-" + secrets.token_urlsafe(24)
    (root / "admin.key").write_text(admin_key + "\n")
    hs_secret = secrets.token_urlsafe(32)
    config = root / "inferno.toml"
    config.write_text(
        f"""
[security]
api_keys = true
admin_key_file = "admin.key"
jwt_secret = "{hs_secret}"
jwt_public_key = "{rsa_public.name}"
jwt_jwks = "{jwks.name}"
jwt_issuer = "{ISSUER}"
jwt_audience = "{AUDIENCE}"
tls_cert = "{cert.name}"
tls_key = "{key.name}"
data_dir = "data"
max_body_bytes = 65536
max_messages = 50
max_tokens_cap = 64
ws_messages_per_second = 5
max_concurrent_streams = 2
# Many tests here expect 401 for wrong credentials from 127.0.0.1; test_defaults.py tests the failure limit.
auth_failures_per_minute = 1000
cors_origins = ["https://dash.example"]
{extra}
"""
    )
    return config, admin_key, hs_secret, rsa_key, ec_key
