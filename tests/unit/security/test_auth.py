"""Authentication backends: JWTAuth, APIKeyAuth and the bearer_token helper."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from socketspec.errors import AuthenticationError, ErrorCode, TokenExpiredError
from socketspec.security import auth as auth_module
from socketspec.security.auth import APIKeyAuth, AuthBackend, JWTAuth, bearer_token

SECRET = "unit-test-secret-that-is-long-enough-for-hs512-" * 2  # 96 bytes


def sign(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- bearer_token -------------------------------------------------------------------------------


def test_bearer_token_from_header() -> None:
    assert bearer_token({"authorization": "Bearer abc.def"}, {}) == "abc.def"
    assert bearer_token({"authorization": "bearer   abc  "}, {}) == "abc"


def test_bearer_token_from_query() -> None:
    assert bearer_token({}, {"token": "q-tok"}) == "q-tok"
    assert bearer_token({}, {"access": "q-tok"}, query_param="access") == "q-tok"


def test_bearer_token_header_wins_over_query() -> None:
    assert bearer_token({"authorization": "Bearer h"}, {"token": "q"}) == "h"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({"authorization": "Basic dXNlcjpwdw=="}, {}),
        ({"authorization": "Bearer "}, {}),
        ({"authorization": "Bearer"}, {}),
        ({}, {"token": ""}),
    ],
)
def test_bearer_token_absent(headers: dict[str, str], query: dict[str, str]) -> None:
    assert bearer_token(headers, query) is None


def test_non_bearer_header_falls_back_to_query() -> None:
    assert bearer_token({"authorization": "Basic xyz"}, {"token": "q"}) == "q"


# -- JWTAuth ------------------------------------------------------------------------------------


def test_jwt_is_an_auth_backend() -> None:
    assert isinstance(JWTAuth(SECRET), AuthBackend)
    assert isinstance(APIKeyAuth(["k"]), AuthBackend)


def test_jwt_good_token_gives_identity() -> None:
    exp = int(time.time()) + 3600
    claims = {"sub": "user-42", "role": "admin", "scopes": ["read", "write"], "exp": exp, "x": 1}
    token = sign(claims)
    ident = JWTAuth(SECRET).authenticate({"authorization": f"Bearer {token}"}, {})
    assert ident.user_id == "user-42"
    assert ident.role == "admin"
    assert ident.scopes == ["read", "write"]
    assert ident.claims == claims
    assert ident.raw_token == token
    assert ident.token_expires_at == datetime.fromtimestamp(exp, UTC)
    assert ident.token_expires_at is not None and ident.token_expires_at.tzinfo is not None
    assert ident.is_authenticated


def test_jwt_space_separated_scope_claim() -> None:
    token = sign({"sub": "u", "scope": "read write admin"})
    ident = JWTAuth(SECRET).authenticate({}, {"token": token})
    assert ident.scopes == ["read", "write", "admin"]


def test_jwt_token_without_sub_is_not_authenticated_user() -> None:
    ident = JWTAuth(SECRET).authenticate({}, {"token": sign({"role": "guest"})})
    assert ident.user_id is None
    assert ident.role == "guest"


def test_jwt_without_optional_claims() -> None:
    token = sign({"sub": "u-7"})
    ident = JWTAuth(SECRET).authenticate({}, {"token": token})
    assert ident.user_id == "u-7"
    assert ident.role is None
    assert ident.scopes == []
    assert ident.token_expires_at is None


def test_jwt_custom_role_claim_and_query_param() -> None:
    token = sign({"sub": "u", "https://x/role": "editor"})
    backend = JWTAuth(SECRET, query_param="jwt", role_claim="https://x/role")
    assert backend.authenticate({}, {"jwt": token}).role == "editor"
    with pytest.raises(AuthenticationError):
        backend.authenticate({}, {"token": token})


def test_jwt_missing_token() -> None:
    with pytest.raises(AuthenticationError) as info:
        JWTAuth(SECRET).authenticate({}, {})
    assert info.value.code is ErrorCode.AUTH_ERROR
    assert not isinstance(info.value, TokenExpiredError)


def test_jwt_wrong_secret() -> None:
    token = sign({"sub": "u"}, secret="another-secret-that-is-also-long-enough-xx")
    with pytest.raises(AuthenticationError) as info:
        JWTAuth(SECRET).authenticate({}, {"token": token})
    assert info.value.code is ErrorCode.AUTH_ERROR


def test_jwt_garbage_token() -> None:
    with pytest.raises(AuthenticationError):
        JWTAuth(SECRET).authenticate({"authorization": "Bearer not-a-jwt"}, {})


def test_jwt_other_algorithm_refused_when_pinned() -> None:
    token = sign({"sub": "u"}, algorithm="HS512")
    with pytest.raises(AuthenticationError):
        JWTAuth(SECRET).authenticate({}, {"token": token})
    # the same token is fine for a backend pinned to HS512
    assert JWTAuth(SECRET, algorithm="HS512").authenticate({}, {"token": token}).user_id == "u"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_jwt_alg_none_token_refused(alg: str) -> None:
    token = b64url({"alg": alg, "typ": "JWT"}) + "." + b64url({"sub": "intruder"}) + "."
    with pytest.raises(AuthenticationError):
        JWTAuth(SECRET).authenticate({}, {"token": token})


def test_jwt_expired_token() -> None:
    token = sign({"sub": "u", "exp": int(time.time()) - 30})
    with pytest.raises(TokenExpiredError) as info:
        JWTAuth(SECRET).authenticate({}, {"token": token})
    assert info.value.code is ErrorCode.AUTH_EXPIRED
    # leeway covers small clock skew
    assert JWTAuth(SECRET, leeway=120).authenticate({}, {"token": token}).user_id == "u"


def test_jwt_require_exp() -> None:
    token = sign({"sub": "u"})
    with pytest.raises(AuthenticationError):
        JWTAuth(SECRET, require_exp=True).authenticate({}, {"token": token})


def test_jwt_audience_and_issuer() -> None:
    backend = JWTAuth(SECRET, audience="chat", issuer="https://idp")
    good = sign({"sub": "u", "aud": "chat", "iss": "https://idp"})
    assert backend.authenticate({}, {"token": good}).user_id == "u"
    for bad in (
        sign({"sub": "u", "aud": "other", "iss": "https://idp"}),
        sign({"sub": "u", "aud": "chat", "iss": "https://evil"}),
    ):
        with pytest.raises(AuthenticationError):
            backend.authenticate({}, {"token": bad})


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_jwt_constructor_refuses_none_algorithm(alg: str) -> None:
    with pytest.raises(ValueError):
        JWTAuth(SECRET, algorithm=alg)


def test_jwt_authenticate_token_directly() -> None:
    token = sign({"sub": "refreshed"})
    assert JWTAuth(SECRET).authenticate_token(token).user_id == "refreshed"


# -- APIKeyAuth ---------------------------------------------------------------------------------


def test_api_key_from_header_and_query() -> None:
    backend = APIKeyAuth(["key-one", "key-two"])
    by_header = backend.authenticate({"x-api-key": "key-two"}, {})
    by_query = backend.authenticate({}, {"api_key": "key-one"})
    assert by_header.extra == {"auth": "api_key"}
    assert by_query.extra == {"auth": "api_key"}


def test_api_key_from_a_plain_list_is_authenticated() -> None:
    # A connection the backend admitted is an authenticated one (the reference's guards test
    # ``conn.identity.is_authenticated``), even when the keys carry no user names.
    ident = APIKeyAuth(["key-one"]).authenticate({"x-api-key": "key-one"}, {})
    assert ident.is_authenticated
    assert ident.user_id != "key-one"  # the secret itself must not become the user id


def test_api_key_custom_header_is_case_insensitive() -> None:
    backend = APIKeyAuth(["k"], header="X-Service-Key", query_param="key")
    backend.authenticate({"x-service-key": "k"}, {})
    backend.authenticate({}, {"key": "k"})
    with pytest.raises(AuthenticationError):
        backend.authenticate({"x-api-key": "k"}, {})


def test_api_key_mapping_gives_user_id() -> None:
    backend = APIKeyAuth({"alpha-key": "svc-alpha", "beta-key": "svc-beta"})
    assert backend.authenticate({"x-api-key": "beta-key"}, {}).user_id == "svc-beta"
    assert backend.authenticate({}, {"api_key": "alpha-key"}).user_id == "svc-alpha"
    assert backend.authenticate({}, {"api_key": "alpha-key"}).is_authenticated


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"x-api-key": "nope"}, {}),
        ({}, {"api_key": "key-on"}),
        ({}, {"api_key": "key-one-"}),
        ({}, {}),
        ({"x-api-key": ""}, {}),
    ],
)
def test_api_key_wrong_or_missing_refused(headers: dict[str, str], query: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError) as info:
        APIKeyAuth(["key-one"]).authenticate(headers, query)
    assert info.value.code is ErrorCode.AUTH_ERROR


def test_api_key_needs_keys() -> None:
    with pytest.raises(ValueError):
        APIKeyAuth([])


@pytest.mark.parametrize("presented", ["k-first", "k-middle", "k-last", "wrong"])
def test_api_key_compares_every_key_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    backend = APIKeyAuth(["k-first", "k-middle", "k-last"])
    if presented == "wrong":
        with pytest.raises(AuthenticationError):
            backend.authenticate({"x-api-key": presented}, {})
    else:
        backend.authenticate({"x-api-key": presented}, {})
    # every key is compared, whichever one matches
    assert len(compared) == 3
    assert {bytes(b) for _, b in compared} | {bytes(a) for a, _ in compared} >= {
        b"k-first",
        b"k-middle",
        b"k-last",
    }
