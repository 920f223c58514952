"""Security layers applied before and around handlers: origins, authentication, rate limits."""

from socketspec.security.auth import APIKeyAuth, AuthBackend, JWTAuth
from socketspec.security.origins import OriginPolicy
from socketspec.security.ratelimit import RateLimit, TokenBucket

__all__ = ["APIKeyAuth", "AuthBackend", "JWTAuth", "OriginPolicy", "RateLimit", "TokenBucket"]
