"""App settings from ``local.settings.json`` and host settings from ``host.json``.

``local.settings.json`` is read the way ``func start`` reads it (Azure Functions Core Tools,
``StartHostAction.UpdateEnvironmentVariables``): every entry of ``Values`` becomes an
environment variable of the host and the worker, except that a variable already set to a
non-empty value in the environment wins and the file's entry is skipped with a warning.
``Host.LocalHttpPort`` is the default port. A missing file is fine (only the environment is
used); ``"IsEncrypted": true`` is refused because there is no machine key to decrypt with.

Like Core Tools, ``AZURE_FUNCTIONS_ENVIRONMENT`` defaults to ``Development``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_ROUTE_PREFIX: Final = "api"
# Functions' default request body limit (100 MB); FUNCTIONS_REQUEST_BODY_SIZE_LIMIT overrides it
# (Azure/azure-functions-host#7204).
DEFAULT_MAX_REQUEST_BODY_SIZE: Final = 104_857_600
REQUEST_BODY_SIZE_LIMIT_SETTING: Final = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DEVELOPMENT_DEFAULTS: Final[Mapping[str, str]] = {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"}

logger = logging.getLogger("localdev.host")


class SettingsError(ValueError):
    """A settings file the host cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class LocalSettings:
    values: Mapping[str, str] = field(default_factory=dict)
    local_http_port: int | None = None
    path: Path | None = None


def _as_setting_value(path: Path, name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise SettingsError(f"{path}: Values.{name} must be a string, not {type(value).__name__}")


def read_local_settings(path: Path) -> LocalSettings:
    """Parse ``local.settings.json``; a missing file gives empty settings."""
    if not path.is_file():
        return LocalSettings(path=None)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    if document.get("IsEncrypted") is True:
        raise SettingsError(f"{path}: encrypted settings are not supported locally")
    raw_values = document.get("Values") or {}
    if not isinstance(raw_values, dict):
        raise SettingsError(f"{path}: Values must be an object")
    values = {
        str(name): _as_setting_value(path, str(name), value)
        for name, value in raw_values.items()
        if value is not None
    }
    port = (document.get("Host") or {}).get("LocalHttpPort")
    if port is not None and not isinstance(port, int):
        raise SettingsError(f"{path}: Host.LocalHttpPort must be a number")
    return LocalSettings(values=values, local_http_port=port, path=path)


@dataclass(frozen=True)
class AppliedSettings:
    applied: tuple[str, ...]
    skipped: tuple[str, ...]


def apply_app_settings(
    values: Mapping[str, str], environ: MutableMapping[str, str]
) -> AppliedSettings:
    """Export settings into ``environ``; a non-empty variable already there wins."""
    applied: list[str] = []
    skipped: list[str] = []
    for name, value in {**DEVELOPMENT_DEFAULTS, **values}.items():
        if not name:
            logger.warning("Skipping local setting with empty key.")
        elif environ.get(name):
            if name not in DEVELOPMENT_DEFAULTS or name in values:
                logger.warning(
                    "Skipping '%s' from local settings as it's already defined in current "
                    "environment variables.",
                    name,
                )
            skipped.append(name)
        else:
            environ[name] = value
            applied.append(name)
    return AppliedSettings(applied=tuple(applied), skipped=tuple(skipped))


@dataclass(frozen=True)
class HostJson:
    """The parts of ``host.json`` the local host honours, plus the raw document for sources."""

    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def route_prefix(self) -> str:
        http = self.extension("http")
        prefix = http.get("routePrefix")
        return DEFAULT_ROUTE_PREFIX if prefix is None else str(prefix)

    def extension(self, name: str) -> Mapping[str, Any]:
        """``extensions.<name>`` (for example ``queues``, ``serviceBus``), or an empty mapping."""
        extensions = self.raw.get("extensions") or {}
        section = extensions.get(name) or {}
        return section if isinstance(section, Mapping) else {}


def read_host_json(app_dir: Path) -> HostJson:
    path = app_dir / "host.json"
    if not path.is_file():
        logger.warning("No host.json in %s: using the host defaults", app_dir)
        return HostJson()
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    return HostJson(raw=document)


def max_request_body_size(environ: Mapping[str, str]) -> int:
    raw = environ.get(REQUEST_BODY_SIZE_LIMIT_SETTING)
    if not raw:
        return DEFAULT_MAX_REQUEST_BODY_SIZE
    try:
        limit = int(raw)
    except ValueError as error:
        raise SettingsError(
            f"{REQUEST_BODY_SIZE_LIMIT_SETTING} must be a number of bytes"
        ) from error
    if limit <= 0:
        raise SettingsError(f"{REQUEST_BODY_SIZE_LIMIT_SETTING} must be positive")
    return limit
