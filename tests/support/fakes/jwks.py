"""A local stand-in for the Bot Framework token service: an RSA key, its JWKS, signed tokens.

Azure Bot Service signs the requests it sends to a bot with keys published at
`https://login.botframework.com/v1/.well-known/keys` (listed by the OpenID metadata at
`…/v1/.well-known/openidconfiguration`). `LocalIssuer` generates a key pair, serves the same two
documents on localhost and mints RS256 tokens shaped like Bot Framework's (issuer
`https://api.botframework.com`, audience = the bot's app id, a `serviceurl` claim), plus the
broken ones a bot must refuse (wrong audience or issuer, expired, foreign signature, `alg: none`).

    async with LocalIssuer() as issuer:
        issuer.jwks_url            # http://127.0.0.1:PORT/v1/.well-known/keys
        issuer.token(aud=APP_ID, service_url=...)
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class LocalIssuer:
    def __init__(self) -> None:
        self.kid = f"local-{uuid.uuid4().hex[:8]}"
        self.key = _new_key()
        self.stranger_key = _new_key()  # signs tokens with our kid but the wrong key
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.requests = 0

    # -- documents

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256", "endorsements": ["msteams"]})
        return {"keys": [jwk]}

    @property
    def jwks_url(self) -> str:
        return self.url + "/v1/.well-known/keys"

    @property
    def openid_url(self) -> str:
        return self.url + "/v1/.well-known/openidconfiguration"

    def openid_configuration(self) -> dict:
        return {
            "issuer": BOT_FRAMEWORK_ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    # -- tokens

    def claims(
        self,
        *,
        aud: str,
        service_url: str | None = None,
        iss: str = BOT_FRAMEWORK_ISSUER,
        lifetime: float = 3600,
        issued_ago: float = 60,
        **extra: Any,
    ) -> dict:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": iss,
            "aud": aud,
            "nbf": now - int(issued_ago),
            "iat": now - int(issued_ago),
            "exp": now - int(issued_ago) + int(lifetime),
        }
        if service_url is not None:
            claims["serviceurl"] = service_url
        claims.update(extra)
        return claims

    def token(self, *, key=None, kid: str | None = "default", alg: str = "RS256", **claims_kw):
        """A signed token; `kid=None` leaves the key id out, `key` signs with another key."""
        headers = {} if kid is None else {"kid": self.kid if kid == "default" else kid}
        return jwt.encode(self.claims(**claims_kw), key or self.key, algorithm=alg, headers=headers)

    def expired_token(self, **claims_kw) -> str:
        # Beyond the validator's 5-minute clock-skew leeway.
        return self.token(issued_ago=7200, lifetime=3600, **claims_kw)

    def foreign_token(self, **claims_kw) -> str:
        """Our key id, someone else's signature."""
        return self.token(key=self.stranger_key, **claims_kw)

    def unsigned_token(self, **claims_kw) -> str:
        """`alg: none` with our key id and an empty signature."""
        header = {"alg": "none", "typ": "JWT", "kid": self.kid}
        return f"{_b64(header)}.{_b64(self.claims(**claims_kw))}."

    def outgoing_token(self, app_id: str) -> str:
        """What the bot would get from Entra ID to call the connector (checked by fakes)."""
        return self.token(
            aud="https://api.botframework.com", iss="https://sts.windows.net/x/", appid=app_id
        )

    # -- server

    def app(self) -> web.Application:
        async def keys(request: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response(self.jwks())

        async def openid(request: web.Request) -> web.Response:
            return web.json_response(self.openid_configuration())

        app = web.Application()
        app.router.add_get("/v1/.well-known/keys", keys)
        app.router.add_get("/v1/.well-known/openidconfiguration", openid)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalIssuer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
