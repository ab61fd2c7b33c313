"""Error types of the app's own library. Leaves of the dependency graph: no imports from the app."""

from __future__ import annotations


class OrderflowError(Exception):
    """Base class for errors the app raises on purpose."""


class ConfigurationError(OrderflowError):
    """A setting is missing or invalid. The message always names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"Invalid configuration: setting {setting} {problem}")


class DependencyUnavailableError(OrderflowError):
    """A backing service (Cosmos DB, Storage, Key Vault, ...) cannot be reached right now.

    Callers map it to 503 with ``Retry-After`` (HTTP) or a retry (messaging).
    """

    def __init__(self, dependency: str, detail: str, retry_after_seconds: int = 5) -> None:
        self.dependency = dependency
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"{dependency} is unavailable: {detail}")


class SecretNotFoundError(OrderflowError):
    """A secret the app needs does not exist (in Key Vault, or as a local setting)."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"secret {name!r} not found in {where}")
