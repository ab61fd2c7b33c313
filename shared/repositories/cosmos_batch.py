"""Transactional batches and lost races, in one place for the repositories that use them
(reservations, import runs).

- A batch is atomic within one logical partition: either every operation was applied or none
  was; the operation that failed it reports its own status, the others 424.
- Cosmos DB answers 449 (retry with) when concurrent writes of one item conflict; the Python SDK
  does not retry it, and it is not an outage, so it becomes :class:`LostRace`.
- :func:`retry_lost_races` repeats an attempt that lost a race with jittered exponential
  backoff, a bounded number of times, then raises DependencyUnavailableError (retryable: the
  message is delivered again later; nothing is lost).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from shared.errors import DependencyUnavailableError, NotFoundError

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

RETRY_WITH: Final = 449
MAX_ATTEMPTS: Final = 12
BACKOFF_BASE_SECONDS: Final = 0.005
BACKOFF_MAX_SECONDS: Final = 0.5


class LostRace(Exception):  # noqa: N818 - it is what happened, not an error to report
    """A concurrent writer won (449, or a precondition the caller treats as a race): retry."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: list[Any]
    failure: tuple[int, int] | None  # (index, status) of the operation that failed the batch

    def body(self, index: int) -> dict[str, Any]:
        """The item operation ``index`` left (create, upsert, replace, patch, read)."""
        body: dict[str, Any] = self.results[index]["resourceBody"]
        return body


def execute_batch(
    container: ContainerProxy,
    partition_key: str,
    operations: Sequence[Any],
    resource: str,
) -> BatchResult:
    """Run ``operations`` as one transactional batch in ``partition_key``."""
    from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

    from shared.repositories.cosmos_errors import cosmos_errors

    with cosmos_errors(resource, partition_key):
        try:
            results = container.execute_item_batch(operations, partition_key=partition_key)
        except CosmosBatchOperationError as error:
            status = int(error.status_code or 0)
            if status == RETRY_WITH:
                raise LostRace from None
            return BatchResult([], (int(error.error_index), status))
        except CosmosHttpResponseError as error:
            if error.status_code == RETRY_WITH:
                raise LostRace from None
            raise
    return BatchResult(list(results), None)


def read_item(
    container: ContainerProxy, item_id: str, partition_key: str, resource: str
) -> dict[str, Any] | None:
    """A point read; None when the item does not exist (or has expired)."""
    from azure.cosmos.exceptions import CosmosHttpResponseError

    from shared.repositories.cosmos_errors import cosmos_errors

    try:
        with cosmos_errors(resource, item_id):
            try:
                document: dict[str, Any] = container.read_item(item_id, partition_key=partition_key)
            except CosmosHttpResponseError as error:
                if error.status_code == RETRY_WITH:
                    raise LostRace from None
                raise
            return document
    except NotFoundError:
        return None


class RaceCounter:
    """Attempts repeated after a lost race (benchmarks report them per operation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


def retry_lost_races[T](
    attempt: Callable[[], T],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    counter: RaceCounter | None = None,
) -> T:
    for number in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except LostRace:
            if counter is not None:
                counter.add()
            ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**number)
            sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security
    raise DependencyUnavailableError(
        "Cosmos DB", f"{what} stayed contended for {MAX_ATTEMPTS} attempts", 1
    )
