"""Authentication backends: ``AuthBackend``, ``JWTAuth`` and ``APIKeyAuth``.

Owns turning the handshake's headers and query parameters (or a refreshed
token) into an ``Identity``, or raising ``AuthenticationError``. Any object
with an ``authenticate(headers, query_params)`` method, sync or async, is an
auth backend; returning None refuses the connection as raising does. The
built-in backends' ``authenticate`` is a coroutine, as in the reference, and
their ``authenticate_token`` (used by ``__refresh_auth__``) is plain. Does not
own what happens on failure (the connect path closes with 4001) or the
session's expiry timers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from socketspec.connection import Identity
from socketspec.errors import AuthenticationError, ConfigurationError, TokenExpiredError


@runtime_checkable
class AuthBackend(Protocol):
    """What an authentication backend provides."""

    def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity | Awaitable[Identity | None] | None:
        """Return the caller's identity, or raise ``AuthenticationError`` (or return None)."""
        ...


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case), whatever the case of the keys.

    The connect path hands over lower-cased headers, found at once; a caller of
    ``authenticate`` with headers as a client spelled them is served too.
    """
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def bearer_token(
    headers: Mapping[str, str],
    query_params: Mapping[str, str],
    query_param: str = "token",
    header: str = "authorization",
) -> str | None:
    """The token from ``Authorization: Bearer`` or, as browsers must, from ``?token=``.

    ``header`` (lower case) names where to look; its value is ``Bearer <token>`` or the
    bare token. Any other scheme (``Basic ...``) is not a token.
    """
    value = header_value(headers, header)
    if value:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            if rest.strip():
                return rest.strip()
        elif not rest:
            # One word and no scheme: the token itself (the reference reads it so too).
            return scheme
    token = query_params.get(query_param)
    return token or None


class JWTAuth:
    """JSON Web Tokens, verified with one pinned algorithm (HS256 by default).

    A token signed with any other algorithm, or with ``alg: none``, is rejected;
    ``exp`` is honoured; ``sub`` becomes ``user_id``; ``role``, ``scopes`` (a list
    or the space-separated ``scope`` claim) and every claim are kept. The token is
    read from ``header`` (``Authorization: Bearer`` by default; a custom header's
    value is the token itself) or else from ``?<query_param>=``.
    """

    def __init__(
        self,
        secret: str | bytes,
        algorithm: str = "HS256",
        header: str = "authorization",
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
        if not header.strip():
            raise ConfigurationError("JWTAuth header must name a header")
        self._jwt = jwt
        self.header = header.strip().lower()
        self.secret = secret
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.query_param = query_param
        self.role_claim = role_claim
        self.required_claims = ["exp"] if require_exp else []

    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity:
        token = bearer_token(headers, query_params, self.query_param, self.header)
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

    ``api_key`` is one key (a string), an iterable of keys, or a mapping of key to
    the user id it stands for. A bare key's user id is ``api-key:`` and a prefix of
    the key's SHA-256, which names the key in logs without revealing it. An empty
    key, or no key at all, is a ``ConfigurationError`` here, not a server that
    quietly admits nobody (or, worse, one-character keys). Keys are compared in
    constant time, and every key is compared, so the time taken says nothing about
    which key came close.
    """

    def __init__(
        self,
        api_key: str | Iterable[str] | Mapping[str, str] | None = None,
        header: str = "x-api-key",
        *,
        keys: Iterable[str] | Mapping[str, str] | None = None,
        query_param: str = "api_key",
    ) -> None:
        if api_key is not None and keys is not None:
            raise ConfigurationError("APIKeyAuth takes api_key or keys, not both")
        given = api_key if api_key is not None else keys
        if given is None:
            raise ConfigurationError("APIKeyAuth needs an api_key")
        self._keys = _key_table(given)
        if not header.strip():
            raise ConfigurationError("APIKeyAuth header must name a header")
        self.header = header.strip().lower()
        self.query_param = query_param

    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity:
        presented = header_value(headers, self.header) or query_params.get(self.query_param)
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


def _key_table(given: str | Iterable[str] | Mapping[str, str]) -> list[tuple[bytes, str]]:
    """(key bytes, user id) pairs; a string is one key, never the characters of one."""
    pairs: list[tuple[str, str | None]]
    if isinstance(given, str | bytes):
        pairs = [(_key_text(given), None)]
    elif isinstance(given, Mapping):
        pairs = [(_key_text(k), str(v)) for k, v in given.items()]
    else:
        pairs = [(_key_text(k), None) for k in given]
    if not pairs:
        raise ConfigurationError("APIKeyAuth needs at least one key")
    return [
        (key.encode(), user or "api-key:" + hashlib.sha256(key.encode()).hexdigest()[:12])
        for key, user in pairs
    ]


def _key_text(key: object) -> str:
    if isinstance(key, bytes):
        key = key.decode()
    if not isinstance(key, str):
        raise ConfigurationError(f"an API key must be a string, got {type(key).__name__}")
    if not key.strip():
        # A header value is stripped by every HTTP parser: a blank key could never match.
        raise ConfigurationError("an API key must not be empty")
    return key
