"""One reset forgets everything the process caches: settings, clients, secrets, services and
the telemetry decision, each registered where it is kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import clients, config, observability, process_state, secrets
from shared.services import providers

LOCAL = {
    "ORDERFLOW_ENVIRONMENT": "local",
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
    "ImportsStorage": "UseDevelopmentStorage=true",
    "PAYMENT_WEBHOOK_SECRET": "local-test-value",  # pragma: allowlist secret - a test value
}


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL.items():
        monkeypatch.setenv(name, value)
    process_state.reset_process_state()
    yield
    process_state.reset_process_state()


def test_every_kind_of_process_state_registers_its_reset() -> None:
    names = {
        f"{reset.__module__}.{reset.__qualname__}" for reset in process_state.registered_resets()
    }

    assert {
        "shared.config.clear_settings_cache",
        "shared.clients.reset_clients",
        "shared.secrets.clear_secret_cache",
        "shared.observability.reset_telemetry_state",
        "shared.services.providers.reset_services",
    } <= names


@pytest.mark.usefixtures("local")
def test_reset_process_state_forgets_everything() -> None:
    settings = config.get_settings()
    blob = clients.get_blob_service()
    store = secrets.get_secret_store()
    service = providers.fulfillment_parking()  # makes no client
    observability.configure_telemetry(None)
    assert observability.telemetry_enabled() is False

    process_state.reset_process_state()

    assert config.get_settings() is not settings
    assert clients.get_blob_service() is not blob
    assert secrets.get_secret_store() is not store
    assert providers.fulfillment_parking() is not service
    assert observability._telemetry_enabled is None


def test_every_provider_is_registered_where_it_is_defined() -> None:
    defined = {
        name
        for name, value in vars(providers).items()
        if callable(value)
        and not isinstance(value, type)
        and hasattr(value, "cache_clear")
        and value.__module__ == providers.__name__
    }

    assert {cached.__name__ for cached in providers._providers} == defined
    assert len(defined) >= 12


def test_threads_asking_a_provider_at_once_share_one_instance() -> None:
    """The first request's service may be made beside the token check while the handler asks
    for it too: one instance, one factory call, and a reset while it is made is not undone."""
    import threading

    from shared.services.providers import provider

    started, release = threading.Event(), threading.Event()
    calls: list[object] = []

    def factory() -> object:
        calls.append(object())
        started.set()
        release.wait(5)
        return calls[-1]

    made = provider(factory)
    try:
        results: list[object] = []
        threads = [threading.Thread(target=lambda: results.append(made())) for _ in range(3)]
        threads[0].start()
        assert started.wait(5)
        for thread in threads[1:]:
            thread.start()
        release.set()
        for thread in threads:
            thread.join(5)
        assert len(calls) == 1
        assert results == [calls[0]] * 3

        made.cache_clear()  # type: ignore[attr-defined]
        release.clear()
        started.clear()
        maker = threading.Thread(target=made)
        maker.start()
        assert started.wait(5)
        made.cache_clear()  # type: ignore[attr-defined]  # forgotten while being made
        release.set()
        maker.join(5)
        assert made() is calls[-1]
        assert len(calls) == 3  # the instance made before the reset was not kept
    finally:
        providers._providers.remove(made)  # type: ignore[arg-type]


def test_what_a_provider_loads_exists_and_is_what_its_factory_imports() -> None:
    """``load()`` imports a route's service modules ahead of making it: a misspelt or stale
    name would fail here, not silently leave the imports to the thread that makes it."""
    import inspect

    loading = [made for made in providers._providers if made.loads]
    assert {made.__name__ for made in loading} >= {"order_service", "inventory_service"}
    for made in loading:
        made.load()
        source = inspect.getsource(made._factory)
        for module in made.loads:
            if module.startswith("shared.") and module not in providers._COSMOS_CLIENT:
                assert f"from {module} import" in source, (made.__name__, module)
