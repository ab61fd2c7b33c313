"""Storage helpers shared by the blob and queue trigger sources: binding connections and
``%SETTING%`` expressions, resolved the way the Functions host resolves them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

_SETTING = re.compile(r"%([^%]+)%")
DEFAULT_CONNECTION = "AzureWebJobsStorage"


class BindingConfigurationError(ValueError):
    """A trigger the host cannot start (the message names the setting)."""


def resolve_setting_expressions(value: str, environ: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with the app setting NAME (missing: an error, as in the host)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise BindingConfigurationError(f"app setting {name!r} (used as %{name}%) is not set")
        return environ[name]

    return _SETTING.sub(replace, value)


def connection_string(connection: str | None, environ: Mapping[str, str]) -> str:
    """The connection string for a binding's ``connection`` (default AzureWebJobsStorage).

    Locally only connection strings are supported: identity-based connections
    (``<name>__serviceUri``) need Azure AD, which the local stand-ins do not have."""
    name = connection or DEFAULT_CONNECTION
    for candidate in (name, f"AzureWebJobs{name}"):
        value = environ.get(candidate)
        if value:
            return value
    raise BindingConfigurationError(
        f"connection {name!r}: app setting {name!r} is not set (the local host needs a "
        "connection string)"
    )


def parse_timespan(value: object, default: timedelta) -> timedelta:
    """A host.json TimeSpan (``hh:mm:ss`` or ``d.hh:mm:ss``, fractions allowed)."""
    if value is None:
        return default
    text = str(value).strip()
    days = 0
    if "." in text.split(":")[0]:
        day_text, text = text.split(".", 1)
        days = int(day_text)
    parts = text.split(":")
    if len(parts) != 3:
        raise BindingConfigurationError(f"{value!r} is not a TimeSpan (hh:mm:ss)")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
