"""Per-lab bearer tokens: the operator's (catalogue writes, the order list) and the registry's (registry
writes, held by the lab's own instances). A request proves it holds one with `Authorization: Bearer …`."""

from __future__ import annotations

import hmac

from flask import request

from shoplab.core.problems import ProblemError


class BearerToken:
    def __init__(self, secret: str, env_name: str, what: str):
        """`env_name`: where the secret comes from (named when it is missing); `what`: what it guards."""
        if not secret:
            # Refusing to start is louder than a service that silently refuses (or allows) every write.
            raise RuntimeError(f"{env_name} (or {env_name}_FILE) is not set: {what} need it")
        self._secret = secret.encode()
        self.what = what

    def require(self) -> None:
        """Raise a 401 problem unless the current request carries this token."""
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ProblemError(
                401,
                f"{self.what.capitalize()} need a bearer token (Authorization: Bearer …).",
                headers={"WWW-Authenticate": 'Bearer realm="shoplab"'},
            )
        # Constant time: how much of a guess matched must not show in how long the answer took.
        if not hmac.compare_digest(presented.strip().encode(), self._secret):
            raise ProblemError(
                401,
                "The bearer token is not valid here.",
                headers={"WWW-Authenticate": 'Bearer realm="shoplab", error="invalid_token"'},
            )

    def header(self) -> dict[str, str]:
        """The header that presents this token (for a client of the service it guards)."""
        return {"Authorization": f"Bearer {self._secret.decode()}"}

    def __repr__(self) -> str:
        return f"BearerToken({self.what!r})"  # never the secret
