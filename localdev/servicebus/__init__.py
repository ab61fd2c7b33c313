"""A Service Bus test broker for the local stack and tests (see :mod:`localdev.servicebus.broker`).

    python -m localdev.servicebus --host 127.0.0.1 --port 5672 --queues fulfillment

Connection string for the SDK (``UseDevelopmentEmulator=true`` selects plain AMQP):
:func:`connection_string`.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PORT: Final = 5672
READY_MARKER: Final = "Service Bus broker listening on amqp://"


def connection_string(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    """The connection string the SDK and the Functions host use for the local broker."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
