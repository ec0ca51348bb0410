"""Keys and certificates the security tests make for themselves: a self-signed TLS certificate for
127.0.0.1/localhost, and RSA and EC key pairs for signing JWTs."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for CN=localhost with SANs localhost and 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def rsa_key_pair(directory: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    """An RSA private key and the path of its public key in PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "jwt-rsa.pub.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


def ec_key_in_jwks(directory: Path, key_id: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """A P-256 private key and the path of a JWKS file holding its public key under key_id."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": key_id, "alg": "ES256", "use": "sig"}]}))
    return key, path
