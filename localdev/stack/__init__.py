"""Orderflow's local stack: Azurite, the Cosmos DB stand-in, the Service Bus broker, the Event Grid
stand-in and the OpenID Connect issuer on 127.0.0.1, no Docker needed.

    with LocalStack(StackPorts.free(), Path(".localdev")) as stack:
        stack.provision()
        os.environ.update(stack.app_settings())

From a shell: ``python -m localdev.stack up | down | status`` (see ``__main__``).
"""

from localdev.stack.processes import ServiceStartError, StackError
from localdev.stack.services import (
    AZURITE,
    COSMOS,
    EVENTGRID,
    IDENTITY,
    SERVICE_NAMES,
    SERVICEBUS,
)
from localdev.stack.stack import (
    AZURITE_ACCOUNT,
    AZURITE_ACCOUNT_KEY,
    COSMOS_EMULATOR_KEY,
    IDEMPOTENCY_DEFAULT_TTL_SECONDS,
    LocalStack,
    PortInUseError,
    StackPorts,
)

__all__ = [
    "AZURITE",
    "AZURITE_ACCOUNT",
    "AZURITE_ACCOUNT_KEY",
    "COSMOS",
    "COSMOS_EMULATOR_KEY",
    "EVENTGRID",
    "IDEMPOTENCY_DEFAULT_TTL_SECONDS",
    "IDENTITY",
    "SERVICEBUS",
    "SERVICE_NAMES",
    "LocalStack",
    "PortInUseError",
    "ServiceStartError",
    "StackError",
    "StackPorts",
]
