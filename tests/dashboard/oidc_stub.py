"""A stub OpenID Connect provider on 127.0.0.1 for the single-sign-on tests: a real HTTP server
with token, userinfo and JWKS endpoints, signing RS256 ID tokens with a key made at start-up.

`StubProvider.authorize(nonce, claims)` plays the user signing in at the provider: it returns a
one-time code that the token endpoint exchanges for an ID token carrying the nonce and claims.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class StubProvider:
    def __init__(self, port: int, client_id: str, client_secret: str):
        self.port, self.client_id, self.client_secret = port, client_id, client_secret
        self.issuer = f"http://127.0.0.1:{port}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "stub-1"
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.token_requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/jwks":
                    pub = provider.key.public_key().public_numbers()
                    self._json(
                        200,
                        {
                            "keys": [
                                {
                                    "kty": "RSA",
                                    "kid": provider.kid,
                                    "alg": "RS256",
                                    "use": "sig",
                                    "n": _b64(pub.n),
                                    "e": _b64(pub.e),
                                }
                            ]
                        },
                    )
                elif self.path == "/userinfo":
                    auth = self.headers.get("Authorization", "")
                    claims = provider.tokens.get(auth.removeprefix("Bearer "))
                    self._json(200, claims) if claims else self._json(
                        401, {"error": "invalid_token"}
                    )
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                if self.path != "/token":
                    return self._json(404, {"error": "not_found"})
                provider.token_requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                else:
                    cid, secret = form.get("client_id", ""), form.get("client_secret", "")
                if (cid, secret) != (provider.client_id, provider.client_secret):
                    return self._json(401, {"error": "invalid_client"})
                grant = provider.codes.pop(form.get("code", ""), None)
                if grant is None:
                    return self._json(400, {"error": "invalid_grant"})
                now = int(time.time())
                id_token = jwt.encode(
                    {
                        "iss": provider.issuer,
                        "aud": provider.client_id,
                        "iat": now,
                        "exp": now + 300,
                        "nonce": grant["nonce"],
                        **grant["claims"],
                    },
                    provider.key,
                    algorithm="RS256",
                    headers={"kid": provider.kid},
                )
                access = secrets.token_urlsafe(16)
                provider.tokens[access] = grant["claims"]
                self._json(
                    200,
                    {
                        "access_token": access,
                        "id_token": id_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StubProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorize(self, nonce: str, claims: dict) -> str:
        code = secrets.token_urlsafe(12)
        self.codes[code] = {"nonce": nonce, "claims": claims}
        return code
