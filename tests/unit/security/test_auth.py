"""Authentication backends: JWTAuth, APIKeyAuth and the bearer_token helper."""

from __future__ import annotations

import base64
import inspect
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from socketspec.errors import (
    AuthenticationError,
    ConfigurationError,
    ErrorCode,
    TokenExpiredError,
)
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


async def test_jwt_good_token_gives_identity() -> None:
    exp = int(time.time()) + 3600
    claims = {"sub": "user-42", "role": "admin", "scopes": ["read", "write"], "exp": exp, "x": 1}
    token = sign(claims)
    ident = await JWTAuth(SECRET).authenticate({"authorization": f"Bearer {token}"}, {})
    assert ident.user_id == "user-42"
    assert ident.role == "admin"
    assert ident.scopes == ["read", "write"]
    assert ident.claims == claims
    assert ident.raw_token == token
    assert ident.token_expires_at == datetime.fromtimestamp(exp, UTC)
    assert ident.token_expires_at is not None and ident.token_expires_at.tzinfo is not None
    assert ident.is_authenticated


async def test_jwt_space_separated_scope_claim() -> None:
    token = sign({"sub": "u", "scope": "read write admin"})
    ident = await JWTAuth(SECRET).authenticate({}, {"token": token})
    assert ident.scopes == ["read", "write", "admin"]


async def test_jwt_token_without_sub_is_not_authenticated_user() -> None:
    ident = await JWTAuth(SECRET).authenticate({}, {"token": sign({"role": "guest"})})
    assert ident.user_id is None
    assert ident.role == "guest"


async def test_jwt_without_optional_claims() -> None:
    token = sign({"sub": "u-7"})
    ident = await JWTAuth(SECRET).authenticate({}, {"token": token})
    assert ident.user_id == "u-7"
    assert ident.role is None
    assert ident.scopes == []
    assert ident.token_expires_at is None


async def test_jwt_custom_role_claim_and_query_param() -> None:
    token = sign({"sub": "u", "https://x/role": "editor"})
    backend = JWTAuth(SECRET, query_param="jwt", role_claim="https://x/role")
    assert (await backend.authenticate({}, {"jwt": token})).role == "editor"
    with pytest.raises(AuthenticationError):
        await backend.authenticate({}, {"token": token})


async def test_jwt_missing_token() -> None:
    with pytest.raises(AuthenticationError) as info:
        await JWTAuth(SECRET).authenticate({}, {})
    assert info.value.code is ErrorCode.AUTH_ERROR
    assert not isinstance(info.value, TokenExpiredError)


async def test_jwt_wrong_secret() -> None:
    token = sign({"sub": "u"}, secret="another-secret-that-is-also-long-enough-xx")
    with pytest.raises(AuthenticationError) as info:
        await JWTAuth(SECRET).authenticate({}, {"token": token})
    assert info.value.code is ErrorCode.AUTH_ERROR


async def test_jwt_garbage_token() -> None:
    with pytest.raises(AuthenticationError):
        await JWTAuth(SECRET).authenticate({"authorization": "Bearer not-a-jwt"}, {})


async def test_jwt_other_algorithm_refused_when_pinned() -> None:
    token = sign({"sub": "u"}, algorithm="HS512")
    with pytest.raises(AuthenticationError):
        await JWTAuth(SECRET).authenticate({}, {"token": token})
    # the same token is fine for a backend pinned to HS512
    assert (
        await JWTAuth(SECRET, algorithm="HS512").authenticate({}, {"token": token})
    ).user_id == "u"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_jwt_alg_none_token_refused(alg: str) -> None:
    token = b64url({"alg": alg, "typ": "JWT"}) + "." + b64url({"sub": "intruder"}) + "."
    with pytest.raises(AuthenticationError):
        await JWTAuth(SECRET).authenticate({}, {"token": token})


async def test_jwt_expired_token() -> None:
    token = sign({"sub": "u", "exp": int(time.time()) - 30})
    with pytest.raises(TokenExpiredError) as info:
        await JWTAuth(SECRET).authenticate({}, {"token": token})
    assert info.value.code is ErrorCode.AUTH_EXPIRED
    # leeway covers small clock skew
    assert (await JWTAuth(SECRET, leeway=120).authenticate({}, {"token": token})).user_id == "u"


async def test_jwt_require_exp() -> None:
    token = sign({"sub": "u"})
    with pytest.raises(AuthenticationError):
        await JWTAuth(SECRET, require_exp=True).authenticate({}, {"token": token})


async def test_jwt_audience_and_issuer() -> None:
    backend = JWTAuth(SECRET, audience="chat", issuer="https://idp")
    good = sign({"sub": "u", "aud": "chat", "iss": "https://idp"})
    assert (await backend.authenticate({}, {"token": good})).user_id == "u"
    for bad in (
        sign({"sub": "u", "aud": "other", "iss": "https://idp"}),
        sign({"sub": "u", "aud": "chat", "iss": "https://evil"}),
    ):
        with pytest.raises(AuthenticationError):
            await backend.authenticate({}, {"token": bad})


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_jwt_constructor_refuses_none_algorithm(alg: str) -> None:
    with pytest.raises(ValueError):
        JWTAuth(SECRET, algorithm=alg)


def test_jwt_authenticate_token_directly() -> None:
    token = sign({"sub": "refreshed"})
    assert JWTAuth(SECRET).authenticate_token(token).user_id == "refreshed"


# -- APIKeyAuth ---------------------------------------------------------------------------------


async def test_api_key_from_header_and_query() -> None:
    backend = APIKeyAuth(["key-one", "key-two"])
    by_header = await backend.authenticate({"x-api-key": "key-two"}, {})
    by_query = await backend.authenticate({}, {"api_key": "key-one"})
    assert by_header.extra == {"auth": "api_key"}
    assert by_query.extra == {"auth": "api_key"}


async def test_api_key_from_a_plain_list_is_authenticated() -> None:
    # A connection the backend admitted is an authenticated one (the reference's guards test
    # ``conn.identity.is_authenticated``), even when the keys carry no user names.
    ident = await APIKeyAuth(["key-one"]).authenticate({"x-api-key": "key-one"}, {})
    assert ident.is_authenticated
    assert ident.user_id != "key-one"  # the secret itself must not become the user id


async def test_api_key_custom_header_is_case_insensitive() -> None:
    backend = APIKeyAuth(["k"], header="X-Service-Key", query_param="key")
    await backend.authenticate({"x-service-key": "k"}, {})
    await backend.authenticate({}, {"key": "k"})
    with pytest.raises(AuthenticationError):
        await backend.authenticate({"x-api-key": "k"}, {})


async def test_api_key_mapping_gives_user_id() -> None:
    backend = APIKeyAuth({"alpha-key": "svc-alpha", "beta-key": "svc-beta"})
    assert (await backend.authenticate({"x-api-key": "beta-key"}, {})).user_id == "svc-beta"
    assert (await backend.authenticate({}, {"api_key": "alpha-key"})).user_id == "svc-alpha"
    assert (await backend.authenticate({}, {"api_key": "alpha-key"})).is_authenticated


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
async def test_api_key_wrong_or_missing_refused(
    headers: dict[str, str], query: dict[str, str]
) -> None:
    with pytest.raises(AuthenticationError) as info:
        await APIKeyAuth(["key-one"]).authenticate(headers, query)
    assert info.value.code is ErrorCode.AUTH_ERROR


@pytest.mark.parametrize("no_keys", [[], (), {}, set(), ""])
def test_api_key_without_any_key_is_a_configuration_error(no_keys: Any) -> None:
    with pytest.raises(ConfigurationError):
        APIKeyAuth(no_keys)


def test_api_key_needs_an_argument() -> None:
    with pytest.raises(ConfigurationError):
        APIKeyAuth()


@pytest.mark.parametrize("keys", [["good-key", ""], ["good-key", "   "], {"": "svc"}, "  "])
def test_an_empty_key_among_keys_is_a_configuration_error(keys: Any) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        APIKeyAuth(keys)


def test_a_key_that_is_not_a_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        APIKeyAuth(["good-key", 42])  # type: ignore[list-item]


# -- APIKeyAuth("key"): a string is one key -----------------------------------------------------


async def test_a_string_is_one_whole_key() -> None:
    backend = APIKeyAuth("abc123")
    ident = await backend.authenticate({"x-api-key": "abc123"}, {})
    assert ident.is_authenticated
    assert ident.user_id is not None and "abc123" not in ident.user_id


@pytest.mark.parametrize("fragment", ["a", "b", "3", "abc", "abc12", "abc1234", "321cba"])
async def test_no_part_of_a_string_key_is_accepted(fragment: str) -> None:
    with pytest.raises(AuthenticationError):
        await APIKeyAuth("abc123").authenticate({"x-api-key": fragment}, {})


async def test_api_key_keyword_and_reference_positional_header() -> None:
    by_keyword = APIKeyAuth(api_key="svc-secret-1")
    assert (await by_keyword.authenticate({}, {"api_key": "svc-secret-1"})).is_authenticated
    custom = APIKeyAuth("svc-secret-1", "X-Token")
    assert (await custom.authenticate({"x-token": "svc-secret-1"}, {})).is_authenticated
    with pytest.raises(AuthenticationError):
        await custom.authenticate({"x-api-key": "svc-secret-1"}, {})


async def test_keys_keyword_still_takes_a_list() -> None:
    backend = APIKeyAuth(keys=["one-key", "two-key"])
    assert (await backend.authenticate({"x-api-key": "two-key"}, {})).is_authenticated
    with pytest.raises(ConfigurationError):
        APIKeyAuth("one-key", keys=["two-key"])


def test_one_string_key_is_compared_once_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    APIKeyAuth("abc123").authenticate_token("abc123")
    assert compared == [(b"abc123", b"abc123")]


async def test_builtin_authenticate_is_awaitable() -> None:
    token = sign({"sub": "awaited"})
    pending = JWTAuth(SECRET).authenticate({}, {"token": token})
    assert inspect.isawaitable(pending)
    assert (await pending).user_id == "awaited"
    keyed = APIKeyAuth("k-await").authenticate({"x-api-key": "k-await"}, {})
    assert inspect.isawaitable(keyed)
    assert (await keyed).is_authenticated


# -- JWTAuth(header=...) ------------------------------------------------------------------------


async def test_jwt_custom_header_carries_the_bare_token_or_a_bearer_one() -> None:
    token = sign({"sub": "hdr-user"})
    backend = JWTAuth(SECRET, "HS256", "X-Access-Token")
    assert (await backend.authenticate({"x-access-token": token}, {})).user_id == "hdr-user"
    bearer = {"x-access-token": f"Bearer {token}"}
    assert (await backend.authenticate(bearer, {})).user_id == "hdr-user"
    by_keyword = JWTAuth(SECRET, header="x-access-token")
    assert (await by_keyword.authenticate({"x-access-token": token}, {})).user_id == "hdr-user"
    # the Authorization header is not read once another header is named; the query still is
    with pytest.raises(AuthenticationError):
        await backend.authenticate({"authorization": f"Bearer {token}"}, {})
    assert (await backend.authenticate({}, {"token": token})).user_id == "hdr-user"


def test_jwt_blank_header_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        JWTAuth(SECRET, header=" ")


@pytest.mark.parametrize("presented", ["k-first", "k-middle", "k-last", "wrong"])
async def test_api_key_compares_every_key_in_constant_time(
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
            await backend.authenticate({"x-api-key": presented}, {})
    else:
        await backend.authenticate({"x-api-key": presented}, {})
    # every key is compared, whichever one matches
    assert len(compared) == 3
    assert {bytes(b) for _, b in compared} | {bytes(a) for a, _ in compared} >= {
        b"k-first",
        b"k-middle",
        b"k-last",
    }


def test_bearer_token_reads_a_bare_token_but_no_other_scheme() -> None:
    assert bearer_token({"authorization": "eyJ.bare.token"}, {}) == "eyJ.bare.token"
    assert bearer_token({"x-access-token": " raw "}, {}, header="x-access-token") == "raw"
    assert bearer_token({"authorization": "Basic dXNlcjpwdw=="}, {}) is None


async def test_headers_are_read_whatever_their_case() -> None:
    token = sign({"sub": "cased"})
    by_jwt = await JWTAuth(SECRET).authenticate({"Authorization": f"Bearer {token}"}, {})
    assert by_jwt.user_id == "cased"
    keyed = await APIKeyAuth("case-key").authenticate({"X-API-Key": "case-key"}, {})
    assert keyed.is_authenticated
