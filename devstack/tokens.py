"""Our token issuer for a token-auth docker-registry: it signs JWTs with a test key; the
registry itself verifies them against the certificate in its root bundle (real check)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.net import LOCALHOST, free_port, http
from devstack.process import Service

ISSUER = "devstack-token-issuer"
SERVICE = "devstack-registry"
LIFETIME = 300  # seconds a token is valid; the registry allows about 60 s of clock skew


def make_key_and_cert(key_path: Path, cert_path: Path) -> None:
    """An EC P-256 key and its self-signed certificate (the registry's rootcertbundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def libtrust_kid(cert_pem: bytes) -> str:
    """docker's libtrust key id: base32(sha256(DER SubjectPublicKeyInfo)[:30]) in 4-char groups."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def granted(scope: str, allowed: bool) -> list[dict[str, Any]]:
    """`repository:app:pull,push` -> the access claim; a known user gets what it asks."""
    out = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if allowed and kind and name:
            out.append({"type": kind, "name": name, "actions": actions.split(",")})
    return out


def serve(port: int, key_path: Path, cert_path: Path, users_path: Path) -> None:
    """GET /token?service=…&scope=… with Basic auth of a user in USERS (JSON {user: pw})."""
    import jwt

    key = key_path.read_bytes()
    kid = libtrust_kid(cert_path.read_bytes())
    log = sys.stdout

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            if parts.path != "/token":
                self.send_error(404)
                return
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            user = self._user()
            if user is False:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="devstack-tokens"')
                self.end_headers()
                print(f"token refused: bad credentials scope={query.get('scope')}", file=log)
                return
            now = int(time.time())
            claims = {
                "iss": ISSUER, "sub": user or "", "aud": query.get("service", SERVICE),
                "exp": now + LIFETIME, "nbf": now - 5, "iat": now, "jti": uuid.uuid4().hex,
                "access": granted(query.get("scope", ""), bool(user)),
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})
            body = json.dumps({"token": token, "access_token": token, "expires_in": LIFETIME,
                               "issued_at": datetime.datetime.now(datetime.UTC).isoformat()})
            print(f"token issued: user={user or '-'} scope={query.get('scope')}", file=log)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def _user(self) -> str | bool | None:
            """The user of valid Basic credentials; None: anonymous; False: wrong ones."""
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            users = json.loads(users_path.read_text())  # read per request: rotation tests
            return user if users.get(user) == password else False

        def log_message(self, *_: Any) -> None:  # our own lines only, never a header
            return

    ThreadingHTTPServer((LOCALHOST, port), Handler).serve_forever()


class TokenIssuer(Service):
    """`python -m devstack.tokens`: the realm a token-auth registry sends clients to.
    `users` {name: password} may pull and push everything; anyone else gets no access."""

    def __init__(self, workdir: Path, users: dict[str, str], name: str = "tokens", *,
                 detach: bool = False) -> None:
        super().__init__(workdir, name, detach=detach)
        self.cwd = Path(__file__).resolve().parent.parent  # `-m devstack.tokens` from the checkout
        self.port = free_port()
        self.users = users
        self.key_path = self.workdir / f"{name}.key"
        self.cert_path = self.workdir / f"{name}.crt"  # the registry's rootcertbundle
        self.users_path = self.workdir / f"{name}.users.json"

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def prepare(self) -> None:
        if not self.cert_path.exists():
            make_key_and_cert(self.key_path, self.cert_path)
        self.users_path.write_text(json.dumps(self.users))
        self.users_path.chmod(0o600)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "devstack.tokens", str(self.port), str(self.key_path),
                str(self.cert_path), str(self.users_path)]

    def ready(self) -> bool:
        return http(f"{self.realm}?service={SERVICE}", timeout=0.5).status == 200

    def token(self, scope: str, user: str | None = None) -> str:
        """A token for `scope` as the issuer hands it out (devstack's own pushes and probes)."""
        import urllib.parse

        auth = (user, self.users[user]) if user else None
        query = urllib.parse.urlencode({"service": SERVICE, "scope": scope})
        reply = http(f"{self.realm}?{query}", auth=auth, timeout=5)
        return str(json.loads(reply.text)["token"])


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
