"""Everything the process keeps between invocations, forgotten in one call.

The app caches what is costly to make (settings, SDK clients, the secret store, services) for
the life of the worker process. Each module that keeps such state registers its own reset with
:func:`on_reset` where the state is defined, so :func:`reset_process_state` (tests, tools that
change the environment) cannot miss one; a module that was never imported holds nothing to
forget. Each reset only drops (and closes) what its module holds and nothing is created again
until the next use, so the order in which they run does not matter.

A leaf: imports nothing from the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_resets: list[Callable[[], None]] = []


def on_reset[F: Callable[[], None]](reset: F) -> F:
    """Register ``reset`` (a decorator): :func:`reset_process_state` calls it."""
    with _lock:
        if reset not in _resets:
            _resets.append(reset)
    return reset


def registered_resets() -> tuple[Callable[[], None], ...]:
    """The registered resets, in the order they run (the order they were registered)."""
    with _lock:
        return tuple(_resets)


def reset_process_state() -> None:
    """Forget every cached setting, client, secret and service of this process (the next use
    creates them again from the current environment)."""
    for reset in registered_resets():
        reset()
