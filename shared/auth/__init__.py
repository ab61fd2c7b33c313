"""Identity and access: who is calling (bearer tokens from the configured OpenID Connect issuer)
and what each caller may do (the permission names and the policy every HTTP route declares).

- :mod:`shared.auth.permissions`: the scope and app-role names, defined once (Entra ID app
  registration, OpenAPI document, local issuer and tests all read them from here).
- :mod:`shared.auth.policy`: :class:`Caller`, :class:`Access` and :func:`authorize`.
- :mod:`shared.auth.tokens`: the bearer-token validator and the issuer's signing-key cache.

Nothing here imports PyJWT or makes a network call at import time.
"""
