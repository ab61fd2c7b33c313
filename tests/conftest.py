"""Shared test fixtures, registered as plugins so each stays in its own module:

- ``tests.fixtures.stack``: the local stack (Azurite, Cosmos stand-in) on free ports.
- ``tests.fixtures.keyvault``: a local HTTPS server that speaks Key Vault's protocol.
- ``tests.fixtures.eventgrid``: a local Event Grid topic endpoint that records events.
- ``tests.fixtures.servicebus``: the Service Bus test broker on its own, on a free port.
- ``tests.fixtures.host``: the local Functions host as a subprocess.
- ``tests.fixtures.app``: the real app served by the local host against the local stack.
"""

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.keyvault",
    "tests.fixtures.eventgrid",
    "tests.fixtures.servicebus",
    "tests.fixtures.host",
    "tests.fixtures.app",
]

# Property tests (Hypothesis): the same examples on every run, no example database on disk,
# few examples (each may talk to the local stack), no per-example deadline (the stack's latency
# is not what they test).
settings.register_profile(
    "orderflow", derandomize=True, database=None, deadline=None, max_examples=20
)
settings.load_profile("orderflow")
