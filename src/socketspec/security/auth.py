"""Authentication backends: ``AuthBackend``, ``JWTAuth`` and ``APIKeyAuth``.

Owns turning the handshake's headers and query parameters (or a refreshed
token) into an ``Identity``, or raising ``AuthenticationError``. Any object
with an ``authenticate(headers, query_params)`` method, sync or async, is an
auth backend. Does not own what happens on failure (the connect path closes
with 4001) or the session's expiry timers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from socketspec.connection import Identity
from socketspec.errors import AuthenticationError, TokenExpiredError


@runtime_checkable
class AuthBackend(Protocol):
    """What an authentication backend provides."""

    def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity | Awaitable[Identity]:
        """Return the caller's identity or raise ``AuthenticationError``."""
        ...


def bearer_token(
    headers: Mapping[str, str], query_params: Mapping[str, str], query_param: str = "token"
) -> str | None:
    """The token from ``Authorization: Bearer`` or, as browsers must, from ``?token=``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    token = query_params.get(query_param)
    return token or None


class JWTAuth:
    """JSON Web Tokens, verified with one pinned algorithm (HS256 by default).

    A token signed with any other algorithm, or with ``alg: none``, is rejected;
    ``exp`` is honoured; ``sub`` becomes ``user_id``; ``role``, ``scopes`` (a list
    or the space-separated ``scope`` claim) and every claim are kept.
    """

    def __init__(
        self,
        secret: str | bytes,
        algorithm: str = "HS256",
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        query_param: str = "token",
        role_claim: str = "role",
        require_exp: bool = False,
    ) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "JWTAuth needs pyjwt: install socketspec with the jwt extra "
                "(pip install 'socketspec[jwt]')"
            ) from exc
        if algorithm.lower() == "none":
            raise ValueError("JWTAuth refuses the 'none' algorithm")
        self._jwt = jwt
        self.secret = secret
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.query_param = query_param
        self.role_claim = role_claim
        self.required_claims = ["exp"] if require_exp else []

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        token = bearer_token(headers, query_params, self.query_param)
        if token is None:
            raise AuthenticationError("missing token")
        return self.authenticate_token(token)

    def authenticate_token(self, token: str) -> Identity:
        jwt = self._jwt
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.required_claims},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpiredError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        return identity_from_claims(claims, token, self.role_claim)


def identity_from_claims(claims: dict[str, Any], token: str, role_claim: str = "role") -> Identity:
    scopes_claim = claims.get("scopes")
    if isinstance(scopes_claim, str):
        scopes = scopes_claim.split()
    elif isinstance(scopes_claim, list):
        scopes = [str(s) for s in scopes_claim]
    else:
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
    exp = claims.get("exp")
    expires = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
    sub = claims.get("sub")
    role = claims.get(role_claim)
    return Identity(
        user_id=str(sub) if sub is not None else None,
        role=str(role) if role is not None else None,
        scopes=scopes,
        claims=claims,
        raw_token=token,
        token_expires_at=expires,
        authenticated=True,
    )


class APIKeyAuth:
    """Static API keys, from the ``x-api-key`` header or ``?api_key=``.

    ``keys`` is an iterable of keys, or a mapping of key to the user id it
    stands for. A bare key's user id is ``api-key:`` and a prefix of the key's
    SHA-256, which names the key in logs without revealing it. Keys are
    compared in constant time, and every key is compared, so the time taken
    says nothing about which key came close.
    """

    def __init__(
        self,
        keys: Iterable[str] | Mapping[str, str],
        *,
        header: str = "x-api-key",
        query_param: str = "api_key",
    ) -> None:
        self._keys: list[tuple[bytes, str]]
        if isinstance(keys, Mapping):
            self._keys = [(k.encode(), str(v)) for k, v in keys.items()]
        else:
            self._keys = [
                (k.encode(), "api-key:" + hashlib.sha256(k.encode()).hexdigest()[:12]) for k in keys
            ]
        if not self._keys:
            raise ValueError("APIKeyAuth needs at least one key")
        self.header = header.lower()
        self.query_param = query_param

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        presented = headers.get(self.header) or query_params.get(self.query_param)
        if not presented:
            raise AuthenticationError("missing API key")
        return self.authenticate_token(presented)

    def authenticate_token(self, token: str) -> Identity:
        candidate = token.encode()
        matched: str | None = None
        found = False
        for key, user in self._keys:
            if hmac.compare_digest(candidate, key):
                found = True
                matched = user
        if not found:
            raise AuthenticationError("invalid API key")
        return Identity(user_id=matched, extra={"auth": "api_key"}, authenticated=True)
