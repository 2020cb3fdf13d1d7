"""A registry with Bearer token auth, as Docker Hub, GHCR and most registries do it.

``docker-registry`` (distribution) checks tokens it did not issue: JWTs
signed by a key whose certificate is in its ``rootcertbundle``. This module
starts one such registry and the token server it names as its realm, which
issues those JWTs (ES256, the certificate in ``x5c``) for the user and
password it was given, or a refresh token (the OAuth2 flows containerd and
Docker use: ``GET`` with basic auth, ``POST`` with ``grant_type=password`` or
``refresh_token``). Anonymous requests get a token without access. It
records what it was asked, so tests can count token requests.
"""

import base64
import datetime
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from mirrors import Registry

SERVICE = "puller-token-registry"
ISSUER = "puller-token-issuer"


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """The realm: ``http://127.0.0.1:PORT/token``."""

    def __init__(self, workdir, user, password, refresh_token):
        self.user, self.password, self.refresh_token = user, password, refresh_token
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = Path(workdir) / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests = []  # (method, user or None, grant, scope)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                user = password = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _sep, password = base64.b64decode(header[6:]).decode().partition(":")
                server._answer(self, "GET", query, user, password, None)

            def _body(self):
                if "chunked" not in self.headers.get("Transfer-Encoding", ""):
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []  # skopeo (Go's net/http) sends its refresh-token form chunked
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if not size:
                        return b"".join(chunks)
                    chunks.append(chunk)

            def do_POST(self):
                body = self._body().decode()
                form = parse_qs(body)
                grant = (form.get("grant_type") or [""])[0]
                server._answer(self, "POST", form, (form.get("username") or [None])[0],
                               (form.get("password") or [None])[0], grant,
                               (form.get("refresh_token") or [None])[0])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.realm = "http://127.0.0.1:%d/token" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _answer(self, h, method, query, user, password, grant, refresh=None):
        scope = (query.get("scope") or [""])[0]
        with self.lock:
            self.requests.append((method, user, grant, scope))
        if refresh is not None:
            ok = refresh == self.refresh_token
        elif user is not None:
            ok = user == self.user and password == self.password
        else:
            ok = None  # anonymous: a token that grants nothing
        if ok is False:
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        access = []
        if ok and scope.startswith("repository:"):
            _kind, name, actions = scope.split(":", 2)
            access = [{"type": "repository", "name": name, "actions": actions.split(",")}]
        token = self.token(user or "", access)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def token(self, subject, access):
        """A JWT the registry accepts."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = "%s.%s" % (_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def grants(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class TokenRegistry(Registry):
    """A ``docker-registry`` that wants Bearer tokens from ``TokenServer``."""

    def __init__(self, workdir, tokens):
        self.tokens = tokens
        super().__init__(workdir)

    def start(self):
        config = self.dir / "config.yml"
        lines = [line for line in config.read_text().splitlines() if not line.startswith("auth:")]
        lines.append("auth: {token: {realm: %s, service: %s, issuer: %s, rootcertbundle: %s}}"
                     % (self.tokens.realm, SERVICE, ISSUER, self.tokens.cert_path))
        config.write_text("\n".join(lines) + "\n")
        super().start()

    def copy(self, source_registry, source, target, tag="latest"):
        """Copy ``source:tag`` from an open registry into ``target``; its manifest digest."""
        push = {"Authorization": "Bearer " + self.tokens.token(
            "admin", [{"type": "repository", "name": target, "actions": ["pull", "push"]}])}
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        manifest = requests.get("http://%s/v2/%s/manifests/%s" % (source_registry, source, tag), headers=accept,
                                timeout=10)
        manifest.raise_for_status()
        document = manifest.json()
        for blob in [document["config"]] + document["layers"]:
            data = requests.get("http://%s/v2/%s/blobs/%s" % (source_registry, source, blob["digest"]),
                                timeout=30).content
            start = requests.post("http://%s/v2/%s/blobs/uploads/" % (self.address, target), headers=push,
                                  timeout=10)
            start.raise_for_status()
            location = start.headers["Location"]
            location = location if location.startswith("http") else "http://%s%s" % (self.address, location)
            put = requests.put(location, params={"digest": blob["digest"]}, data=data,
                               headers=dict(push, **{"Content-Type": "application/octet-stream"}), timeout=30)
            put.raise_for_status()
        put = requests.put("http://%s/v2/%s/manifests/%s" % (self.address, target, tag), data=manifest.content,
                           headers=dict(push, **{"Content-Type": document["mediaType"]}), timeout=10)
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(manifest.content).hexdigest()
