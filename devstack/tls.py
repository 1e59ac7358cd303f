"""A throw-away CA and server certificate for 127.0.0.1; redis-server on TLS with ACL users."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.net import LOCALHOST
from devstack.redis import RedisServer


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_certs(directory: Path, cn: str = "orchestrator-test-ca") -> Certs:
    """An EC P-256 CA (with key usage, which strict X.509 checks want) and a server certificate
    for 127.0.0.1 and localhost, valid for two days; absolute paths (redis-server chdirs)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("redis")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address(LOCALHOST)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    certs = Certs(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, certs.key)
    return certs


class TlsRedis(RedisServer):
    """redis-server reachable only over TLS (server certificate only: tls-auth-clients no),
    with `users` (name -> ACL rules after `on >password`); the default user is turned off
    and `admin` (password `admin_password`) may do anything."""

    def __init__(self, workdir: Path, certs: Certs, users: Mapping[str, Sequence[str]],
                 *, admin_password: str, name: str = "tls-redis",
                 extra: Sequence[str] = ()) -> None:
        acl = ["--user", "default", "off"]
        acl += ["--user", "admin", "on", f">{admin_password}", "~*", "&*", "+@all"]
        for user, rules in users.items():
            acl += ["--user", user, *rules]
        super().__init__(workdir, name, args=[*acl, *extra])
        self.certs = certs
        self.admin_password = admin_password

    def argv(self) -> list[str]:
        plain = super().argv()
        at = plain.index("--port")
        plain[at:at + 2] = ["--port", "0", "--tls-port", str(self.port)]
        return plain + ["--tls-cert-file", str(self.certs.cert),
                        "--tls-key-file", str(self.certs.key),
                        "--tls-ca-cert-file", str(self.certs.ca), "--tls-auth-clients", "no"]

    def user_url(self, user: str, password: str, db: int) -> str:
        return f"rediss://{user}:{password}@{LOCALHOST}:{self.port}/{db}"

    @property
    def url(self) -> str:
        return f"rediss://admin:{self.admin_password}@{LOCALHOST}:{self.port}"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis[Any]:
        return redis.Redis.from_url(f"{self.url}/{db}", ssl_ca_certs=str(self.certs.ca),
                                    **kwargs)
