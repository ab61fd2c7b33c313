"""A local Event Grid: one custom topic, storage events, and the subscriptions of infra/.

    python -m localdev.eventgrid --port 60101 --functions-url http://127.0.0.1:7071 \
        --blob-endpoint http://127.0.0.1:10000/devstoreaccount1

The app publishes to :func:`topic_endpoint` with the key :data:`LOCAL_TOPIC_KEY`
(``EVENTGRID_TOPIC_ENDPOINT`` / ``EVENTGRID_TOPIC_KEY``), exactly as to a basic custom topic
in Azure (:mod:`localdev.eventgrid.topic`). The subscriptions of ``subscriptions.json``
(:mod:`localdev.eventgrid.subscriptions`, kept equal to infra/ by a contract test) deliver
each event to the Functions host as Event Grid does (:mod:`localdev.eventgrid.delivery`):
``func start`` and the project's local host receive the same requests.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PORT: Final = 60101
READY_MARKER: Final = "Event Grid stand-in listening on http://"
# The local topic's access key: a development value like the emulators' keys, valid only for
# the stand-in on loopback (shared.config refuses keys outside ORDERFLOW_ENVIRONMENT=local).
LOCAL_TOPIC_KEY: Final = "local-eventgrid-topic-key"  # pragma: allowlist secret
TOPIC_KEY_SETTING: Final = "EVENTGRID_TOPIC_KEY"


def topic_endpoint(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    """The publish URL of the local custom topic (``EVENTGRID_TOPIC_ENDPOINT``)."""
    return f"http://{host}:{port}/api/events"
