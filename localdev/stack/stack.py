"""The local stack: Azurite (blob, queue, table), the Cosmos DB stand-in, the Service Bus test
broker and the Event Grid stand-in, as one unit that starts, provisions the app's resources,
reports the app settings that point at it, and stops without leaving a process behind.

The Event Grid stand-in (``localdev.eventgrid``) is the app's custom topic
(``EVENTGRID_TOPIC_ENDPOINT``) and delivers to the Functions host at ``ports.functions``
(7071, or a free port reserved for the test's host), whichever host serves the app there.

The Cosmos stand-in keeps its data in memory: restarting it (``start_service("cosmos")``)
loses every item, and the stack provisions the database and containers again if it had
provisioned them before. Azurite keeps its data on disk under the work directory.

The Service Bus test broker (``localdev.servicebus``) creates the app's queues
(``shared.names.SERVICE_BUS_QUEUES``) when it starts and keeps its messages on disk under the
work directory, like Azurite: after ``stop_service("servicebus")`` and ``start_service`` the
queues and dead-letter queues still hold them (locks held at the stop are lost, so those
messages are delivered again).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from localdev.stack import services
from localdev.stack.processes import (
    ManagedProcess,
    ServiceStartError,
    StackError,
    free_ports,
    is_paused,
    port_is_free,
    read_cmdline,
)
from localdev.stack.services import (
    AZURITE,
    COSMOS,
    EVENTGRID,
    IDENTITY,
    SERVICE_NAMES,
    SERVICEBUS,
    ServiceSpec,
)
from localdev.stack.state import (
    RecordedService,
    StackState,
    read_state,
    remove_state,
    running_services,
    write_state,
)
from shared import names
from shared.auth.permissions import LOCAL_AUDIENCE

# Well-known, public development credentials (the same in every emulator installation).
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

# Idempotency records expire after a day unless an item sets its own ``ttl``.
IDEMPOTENCY_DEFAULT_TTL_SECONDS = 24 * 60 * 60

READY_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class StackPorts:
    """Where the services listen on 127.0.0.1. The defaults are the standard local ports."""

    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    cosmos: int = 8081
    servicebus: int = 5672
    eventgrid: int = 60101
    # Not a stand-in: where the Functions host listens, so Event Grid can deliver to it.
    functions: int = 7071
    issuer: int = 8091

    @classmethod
    def standard(cls) -> StackPorts:
        return cls()

    @classmethod
    def free(cls) -> StackPorts:
        blob, queue, table, cosmos, servicebus, eventgrid, functions, issuer = free_ports(8)
        return cls(
            blob=blob,
            queue=queue,
            table=table,
            cosmos=cosmos,
            servicebus=servicebus,
            eventgrid=eventgrid,
            functions=functions,
            issuer=issuer,
        )

    def for_service(self, name: str) -> dict[str, int]:
        if name == AZURITE:
            return {"blob": self.blob, "queue": self.queue, "table": self.table}
        if name == COSMOS:
            return {"cosmos": self.cosmos}
        if name == SERVICEBUS:
            return {"servicebus": self.servicebus}
        if name == EVENTGRID:
            return {"eventgrid": self.eventgrid}
        if name == IDENTITY:
            return {"issuer": self.issuer}
        raise ValueError(f"unknown service {name!r}; expected one of {SERVICE_NAMES}")


class PortInUseError(StackError):
    """A port the stack needs is taken (often: another stack is already running)."""


class LocalStack:
    """Azurite + the Cosmos stand-in on 127.0.0.1. Use as a context manager or call
    :meth:`start` / :meth:`stop`; an ``atexit`` hook stops whatever is still running."""

    def __init__(
        self,
        ports: StackPorts,
        workdir: Path,
        *,
        log_dir: Path | None = None,
        foreground: bool = False,
        eventgrid_retry_delays: str | None = None,
    ) -> None:
        """``foreground=True`` marks the process as the stack's controller (the ``up`` command):
        ``python -m localdev.stack down`` then asks it to stop rather than only its services.
        ``eventgrid_retry_delays`` (comma-separated seconds) shortens or lengthens the Event
        Grid stand-in's retry schedule."""
        self.ports = ports
        self.eventgrid_retry_delays = eventgrid_retry_delays
        self.workdir = workdir.resolve()
        self.log_dir = (log_dir or self.workdir / "logs").resolve()
        self._foreground = foreground
        self._processes: dict[str, ManagedProcess] = {}
        self._provisioned = False
        self._atexit_registered = False
        self._wrote_state = False  # only the stack that wrote stack.json may remove it

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses and settings -------------------------------------------------------------

    @property
    def cosmos_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports.cosmos}/"

    @property
    def storage_connection_string(self) -> str:
        """Azurite with explicit 127.0.0.1 endpoints (``UseDevelopmentStorage=true`` would
        mean the fixed default ports)."""
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.ports.blob}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={base}:{self.ports.queue}/{AZURITE_ACCOUNT};"
            f"TableEndpoint={base}:{self.ports.table}/{AZURITE_ACCOUNT};"
        )

    @property
    def servicebus_connection_string(self) -> str:
        """The local broker, as the SDK and the Functions host reach the Service Bus emulator."""
        from localdev.servicebus import connection_string

        return connection_string(self.ports.servicebus)

    @property
    def eventgrid_topic_endpoint(self) -> str:
        from localdev.eventgrid import topic_endpoint

        return topic_endpoint(self.ports.eventgrid)

    @property
    def functions_url(self) -> str:
        """Where the stack expects the Functions host (Event Grid delivers there)."""
        return f"http://127.0.0.1:{self.ports.functions}"

    @property
    def issuer_url(self) -> str:
        """The local OpenID Connect issuer: its URL is the tokens' ``iss`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.ports.issuer}"

    def app_settings(self) -> dict[str, str]:
        """The app settings that point the app at this stack."""
        from localdev.eventgrid import LOCAL_TOPIC_KEY

        return {
            "ORDERFLOW_ENVIRONMENT": "local",
            "COSMOS_ENDPOINT": self.cosmos_endpoint,
            "COSMOS_KEY": COSMOS_EMULATOR_KEY,
            "COSMOS_DATABASE": names.COSMOS_DATABASE_DEFAULT,
            "ImportsStorage": self.storage_connection_string,
            "AzureWebJobsStorage": self.storage_connection_string,
            "ServiceBusConnection": self.servicebus_connection_string,
            "EVENTGRID_TOPIC_ENDPOINT": self.eventgrid_topic_endpoint,
            "EVENTGRID_TOPIC_KEY": LOCAL_TOPIC_KEY,
            "AUTH_ISSUER": self.issuer_url,
            "AUTH_AUDIENCE": LOCAL_AUDIENCE,
            "AUTH_CUSTOMER_CLAIM": "sub",
        }

    def log_path(self, name: str) -> Path:
        self.ports.for_service(name)  # validates the name
        return self.log_dir / f"{name}.log"

    def pids(self) -> dict[str, int]:
        """Pids of the running services (each also leads its own process group)."""
        return {
            name: process.pid
            for name, process in self._processes.items()
            if process.pid is not None and process.is_running()
        }

    # --- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def start_on_free_ports(
        cls, workdir: Path, *, attempts: int = 3, eventgrid_retry_delays: str | None = None
    ) -> LocalStack:
        """A started stack (not provisioned) on free ports; the caller stops it. Another process
        can take a port between choosing and binding it: a conflict is retried with fresh ports
        up to ``attempts`` times, any other failure is raised at once."""
        for attempt in range(1, attempts + 1):
            stack = cls(StackPorts.free(), workdir, eventgrid_retry_delays=eventgrid_retry_delays)
            try:
                stack.start()
            except (PortInUseError, ServiceStartError) as error:
                conflict = isinstance(error, PortInUseError) or error.port_conflict
                if conflict and attempt < attempts:
                    continue
                raise
            return stack
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises

    def start(self) -> None:
        """Start every service and wait until each answers. On failure nothing is left running."""
        self._start(SERVICE_NAMES)

    def start_service(self, name: str) -> None:
        """Start one service again on its port, wait for it, and restore its provisioning."""
        self.ports.for_service(name)
        self._start((name,))
        if self._provisioned and name == COSMOS:
            self._provision_cosmos()  # it kept its data; provisioning again is harmless

    def rotate_issuer_key(self) -> None:
        """The local issuer generates a new signing key and signs with it from now on; the
        old key stays in its JWKS (as Entra ID rotates: publish first, then sign)."""
        self._signal_issuer(signal.SIGUSR1, "rotated signing key")

    def retire_old_issuer_keys(self) -> None:
        """Every key but the current signing key leaves the local issuer's JWKS."""
        self._signal_issuer(signal.SIGUSR2, "retired signing keys")

    def _signal_issuer(self, sig: signal.Signals, marker: str, timeout: float = 10.0) -> None:
        process = self._processes.get(IDENTITY)
        if process is None or process.pid is None or not process.is_running():
            raise StackError("the local issuer is not running")
        before = process.output_since_start().count(marker)
        os.kill(process.pid, sig)
        deadline = time.monotonic() + timeout
        while process.output_since_start().count(marker) <= before:
            if time.monotonic() > deadline:
                raise StackError(f"the local issuer did not confirm {sig.name} ({marker!r})")
            time.sleep(_POLL_SECONDS)

    def stop_service(self, name: str) -> None:
        """Stop one service (its process group), e.g. to simulate an outage."""
        self.ports.for_service(name)
        process = self._processes.pop(name, None)
        if process is not None:
            process.stop()
        self._record()

    def pause_service(self, name: str) -> None:
        """Freeze one service (SIGSTOP to its process group): its ports still accept
        connections (the kernel completes the handshake) but nothing is ever answered, the way
        a hung dependency or a network blackhole behaves. :meth:`resume_service` undoes it;
        :meth:`stop` and :meth:`stop_service` resume a paused service before stopping it."""
        self._signal_and_wait(name, signal.SIGSTOP, paused=True)

    def resume_service(self, name: str) -> None:
        """Continue a paused service (SIGCONT); harmless when it is not paused."""
        self._signal_and_wait(name, signal.SIGCONT, paused=False)

    def _signal_and_wait(self, name: str, sig: signal.Signals, *, paused: bool) -> None:
        # Signals are delivered asynchronously: return only once the kernel shows the change.
        process = self._running_process(name)
        process.signal_group(sig)
        deadline = time.monotonic() + 2.0
        while self.is_paused(name) != paused and time.monotonic() < deadline:
            time.sleep(0.005)

    def is_paused(self, name: str) -> bool:
        pid = self._running_process(name).pid
        return pid is not None and is_paused(pid)

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """``with stack.paused("cosmos"): ...``: the service is frozen inside the block and
        resumed when it ends, however it ends."""
        self.pause_service(name)
        try:
            yield
        finally:
            with contextlib.suppress(StackError):
                self.resume_service(name)

    def resume_all(self) -> None:
        """Resume every paused service (teardown of a test that may have left one frozen)."""
        for name in list(self._processes):
            with contextlib.suppress(StackError, ProcessLookupError):
                self.resume_service(name)

    def _running_process(self, name: str) -> ManagedProcess:
        self.ports.for_service(name)  # validates the name
        process = self._processes.get(name)
        if process is None or not process.is_running():
            raise StackError(f"{name} is not running")
        return process

    def stop(self) -> None:
        """Stop every service and wait for it to exit. Safe to call more than once."""
        try:
            for name in list(self._processes):
                self._processes.pop(name).stop()
        finally:
            if self._wrote_state:
                remove_state(self.workdir)
                self._wrote_state = False
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def _start(self, names_to_start: tuple[str, ...]) -> None:
        services.check_node_modules()
        self._refuse_if_recorded_stack_runs()
        specs = [self._spec(name) for name in names_to_start if name not in self.pids()]
        for spec in specs:
            for label, port in spec.ports.items():
                if not port_is_free(port):
                    raise PortInUseError(
                        f"port {port} ({label}) on 127.0.0.1 is in use; is another stack "
                        "running? (`python -m localdev.stack status`), or use --ports free"
                    )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            for spec in specs:
                process = ManagedProcess(spec.name, spec.argv, self.log_path(spec.name))
                self._processes[spec.name] = process
                process.start()
            self._wait_until_ready(specs)
        except BaseException:
            for spec in specs:
                started = self._processes.pop(spec.name, None)
                if started is not None:
                    started.stop()
            self._record()
            raise
        self._record()

    def _spec(self, name: str) -> ServiceSpec:
        if name == AZURITE:
            data_dir = self.workdir / "azurite"
            data_dir.mkdir(parents=True, exist_ok=True)
            return services.azurite_spec(
                self.ports.blob, self.ports.queue, self.ports.table, data_dir
            )
        if name == IDENTITY:
            return services.identity_spec(
                self.ports.issuer, self.issuer_url, LOCAL_AUDIENCE, self.workdir / "identity"
            )
        if name == SERVICEBUS:
            return services.servicebus_spec(
                self.ports.servicebus, names.SERVICE_BUS_QUEUES, self.workdir / "servicebus"
            )
        if name == EVENTGRID:
            base = "http://127.0.0.1"
            return services.eventgrid_spec(
                self.ports.eventgrid,
                functions_url=self.functions_url,
                blob_endpoint=f"{base}:{self.ports.blob}/{AZURITE_ACCOUNT}",
                queue_endpoint=f"{base}:{self.ports.queue}/{AZURITE_ACCOUNT}",
                retry_delays=self.eventgrid_retry_delays,
                state_dir=self.workdir / "eventgrid",
            )
        return services.cosmos_spec(self.ports.cosmos, self.workdir / "cosmos")

    def _wait_until_ready(self, specs: list[ServiceSpec]) -> None:
        pending = {spec.name: spec for spec in specs}
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while pending:
            for name, spec in list(pending.items()):
                process = self._processes[name]
                code = process.exit_code()
                if code is not None:
                    raise ServiceStartError(
                        name, f"exited with code {code} before it was ready", process.log_path
                    )
                output = process.output_since_start()
                if all(marker in output for marker in spec.log_markers) and spec.probe():
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                name, spec = next(iter(pending.items()))
                where = ", ".join(f"{label} 127.0.0.1:{port}" for label, port in spec.ports.items())
                raise ServiceStartError(
                    name,
                    f"did not become ready within {READY_TIMEOUT_SECONDS:.0f} s ({where})",
                    self._processes[name].log_path,
                )
            time.sleep(_POLL_SECONDS)

    def _refuse_if_recorded_stack_runs(self) -> None:
        state = read_state(self.workdir)
        if state is None:
            return
        ours = set(self.pids().values())
        alive = {name: pid for name, pid in running_services(state).items() if pid not in ours}
        if alive:
            raise StackError(
                f"a stack recorded in {self.workdir} is still running (pids "
                f"{', '.join(map(str, alive.values()))}); stop it with "
                f"`python -m localdev.stack down --workdir {self.workdir}`"
            )

    def _record(self) -> None:
        """Write stack.json so `status` and `down` in another shell can find these processes."""
        recorded: dict[str, RecordedService] = {}
        for name, process in self._processes.items():
            cmdline = process.cmdline()
            if process.pid is not None and cmdline is not None:
                recorded[name] = {
                    "pid": process.pid,
                    "cmdline": cmdline,
                    "log": str(process.log_path),
                }
        state: StackState = {
            "owner": {
                "pid": os.getpid(),
                "cmdline": read_cmdline(os.getpid()) or [],
                "stop_on_down": self._foreground,
            },
            "ports": asdict(self.ports),
            "services": recorded,
            "provisioned": self._provisioned,
            "settings": self.app_settings(),
        }
        write_state(self.workdir, state)
        self._wrote_state = True

    # --- provisioning -------------------------------------------------------------------------

    def provision(self) -> None:
        """Create the app's resources if they do not exist yet. Safe to run again."""
        self._provision_cosmos()
        self._provision_storage()
        self._provisioned = True
        self._record()

    def _provision_cosmos(self) -> None:
        from azure.cosmos import CosmosClient, PartitionKey

        with warnings.catch_warnings():
            # The stand-in's certificate is self-signed; the SDK skips verification on loopback.
            warnings.filterwarnings("ignore", "Unverified HTTPS request", module="urllib3")
            with CosmosClient(
                self.cosmos_endpoint,
                credential=COSMOS_EMULATOR_KEY,
                enable_endpoint_discovery=False,  # the stand-in has no regions to discover
                connection_timeout=5,
            ) as client:
                database = client.create_database_if_not_exists(names.COSMOS_DATABASE_DEFAULT)
                for container, partition_key_path in names.COSMOS_CONTAINERS.items():
                    database.create_container_if_not_exists(
                        container,
                        PartitionKey(path=partition_key_path),
                        default_ttl=names.COSMOS_CONTAINER_DEFAULT_TTL.get(container),
                    )

    def _provision_storage(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        from localdev.eventgrid.subscriptions import load_subscriptions

        # The app's containers, and Event Grid's dead-letter container (it must exist, as in
        # Azure, where Bicep creates it).
        dead_letters = load_subscriptions().dead_letter_container
        with BlobServiceClient.from_connection_string(self.storage_connection_string) as blobs:
            for container in (*names.BLOB_CONTAINERS, dead_letters):
                with contextlib.suppress(ResourceExistsError):
                    blobs.create_container(container)
        with QueueServiceClient.from_connection_string(self.storage_connection_string) as queues:
            for queue in names.STORAGE_QUEUES:
                # Creating an existing queue succeeds unless its metadata differs.
                with contextlib.suppress(ResourceExistsError):
                    queues.create_queue(queue)
