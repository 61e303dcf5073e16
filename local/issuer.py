"""A local stand-in for the identity provider whose JWTs the admin API accepts.

In AWS the HTTP API's JWT authorizer checks tokens from the CRM's identity provider; locally this
issuer signs RS256 tokens and the local gateway checks them the same way.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from local.gateway import JwtCheck

AUDIENCE = "contactsync"


@dataclass
class LocalIssuer:
    issuer: str = "https://issuer.contactsync.local/"
    audience: str = AUDIENCE
    _key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def token(
        self,
        *,
        user_id: str,
        company_id: str,
        role: str = "user",
        expires_in: int = 12 * 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "company_id": company_id,
            "role": role,
            "scope": "contactsync",
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return jwt.encode(claims, self._key, algorithm="RS256")

    @property
    def check(self) -> JwtCheck:
        return JwtCheck(
            issuer=self.issuer, audience=self.audience, public_key=self._key.public_key()
        )
