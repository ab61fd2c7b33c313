"""What the app relies on from Cosmos DB beyond CRUD, enforced by the stand-in's launcher and
checked here with the unmodified azure-cosmos SDK against the behaviour Cosmos DB documents:

- transactional batch (docs: "Transactional batch operations in Azure Cosmos DB"): every
  operation type, in the partition the request names, all or nothing; the failing operation
  reports its own status, every other operation 424 (failed dependency); at most 100 operations;
- patch with a filter predicate and if-match (412 when either does not hold);
- the 2 MB item limit (413 RequestEntityTooLarge, nothing stored);
- time to live (docs: "Time to Live (TTL) in Azure Cosmos DB"): container ``defaultTtl`` absent
  = off, -1 = on without a default, n = expire n seconds after the last write; an item's
  ``ttl`` (-1 or n > 0) overrides it where TTL is on; an expired item no longer appears in reads
  or queries even before it is physically deleted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from localdev.stack import COSMOS_EMULATOR_KEY, LocalStack

pytestmark = pytest.mark.integration

TEST_DATABASE = "standin-batch-ttl-tests"
TWO_MB = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def database(local_stack: LocalStack) -> Iterator[DatabaseProxy]:
    with CosmosClient(
        local_stack.cosmos_endpoint, COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False
    ) as client:
        yield client.create_database_if_not_exists(TEST_DATABASE)


def _container(database: DatabaseProxy, default_ttl: int | None = None) -> ContainerProxy:
    return database.create_container(
        f"stock-{uuid.uuid4().hex[:8]}", PartitionKey(path="/sku"), default_ttl=default_ttl
    )


@pytest.fixture
def stock(database: DatabaseProxy) -> Iterator[ContainerProxy]:
    container = _container(database)
    try:
        yield container
    finally:
        database.delete_container(container)


def _statuses(error: cosmos_errors.CosmosBatchOperationError) -> list[int]:
    return [int(response["statusCode"]) for response in error.operation_responses]


def _ids(container: ContainerProxy, sku: str) -> list[str]:
    return sorted(i["id"] for i in container.query_items("SELECT * FROM c", partition_key=sku))


# --------------------------------------------------------------------------------- batch


def test_a_batch_runs_every_operation_type_in_one_partition(stock: ContainerProxy) -> None:
    stock.create_item({"id": "S1", "sku": "S1", "available": 5})
    stock.create_item({"id": "old", "sku": "S1", "note": "to replace"})
    stock.create_item({"id": "gone", "sku": "S1"})

    results = stock.execute_item_batch(
        [
            ("create", ({"id": "r:alice", "sku": "S1", "quantity": 2},)),
            ("upsert", ({"id": "u", "sku": "S1", "v": 1},)),
            ("replace", ("old", {"id": "old", "sku": "S1", "note": "replaced"})),
            (
                "patch",
                ("S1", [{"op": "incr", "path": "/available", "value": -2}]),
                {"filter_predicate": "FROM c WHERE c.available >= 2"},
            ),
            ("delete", ("gone",)),
            ("read", ("S1",)),
        ],
        partition_key="S1",
    )

    assert [r["statusCode"] for r in results] == [201, 201, 200, 200, 204, 200]
    assert results[5]["resourceBody"]["available"] == 3  # a read sees the batch's own writes
    assert stock.read_item("old", partition_key="S1")["note"] == "replaced"
    assert _ids(stock, "S1") == ["S1", "old", "r:alice", "u"]


def test_a_failing_operation_undoes_the_whole_batch_and_the_others_answer_424(
    stock: ContainerProxy,
) -> None:
    stock.create_item({"id": "S1", "sku": "S1", "available": 1})
    kept = stock.create_item({"id": "keep", "sku": "S1", "v": 1})
    stock.create_item({"id": "r:bob", "sku": "S1", "quantity": 1})

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as caught:
        stock.execute_item_batch(
            [
                ("create", ({"id": "r:carol", "sku": "S1", "quantity": 1},)),
                ("replace", ("keep", {"id": "keep", "sku": "S1", "v": 2})),
                ("delete", ("r:bob",)),
                ("upsert", ({"id": "new", "sku": "S1"},)),
                (
                    "patch",
                    ("S1", [{"op": "incr", "path": "/available", "value": -2}]),
                    {"filter_predicate": "FROM c WHERE c.available >= 2"},
                ),
            ],
            partition_key="S1",
        )

    assert caught.value.error_index == 4
    assert caught.value.status_code == 412
    assert _statuses(caught.value) == [424, 424, 424, 424, 412]
    # Nothing of it happened: the replaced item is back with its ETag, the deleted one too.
    assert _ids(stock, "S1") == ["S1", "keep", "r:bob"]
    assert stock.read_item("keep", partition_key="S1")["_etag"] == kept["_etag"]
    assert stock.read_item("S1", partition_key="S1")["available"] == 1
    # The ids created and then undone are free again.
    stock.create_item({"id": "r:carol", "sku": "S1", "quantity": 1})


def test_a_replayed_marker_is_a_409_and_changes_nothing(stock: ContainerProxy) -> None:
    stock.create_item({"id": "S1", "sku": "S1", "available": 5})
    batch: list[Any] = [
        ("create", ({"id": "r:dave", "sku": "S1", "quantity": 2},)),
        ("patch", ("S1", [{"op": "incr", "path": "/available", "value": -2}])),
    ]
    stock.execute_item_batch(batch, partition_key="S1")

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as caught:
        stock.execute_item_batch(batch, partition_key="S1")

    assert _statuses(caught.value) == [409, 424]
    assert stock.read_item("S1", partition_key="S1")["available"] == 3


def test_batch_if_match_and_a_missing_item(stock: ContainerProxy) -> None:
    first = stock.create_item({"id": "S1", "sku": "S1", "available": 5})
    stock.patch_item(
        "S1", partition_key="S1", patch_operations=[{"op": "set", "path": "/x", "value": 1}]
    )

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as stale:
        stock.execute_item_batch(
            [
                ("create", ({"id": "m", "sku": "S1"},)),
                (
                    "patch",
                    ("S1", [{"op": "set", "path": "/available", "value": 0}]),
                    {"if_match_etag": first["_etag"]},
                ),
            ],
            partition_key="S1",
        )
    assert _statuses(stale.value) == [424, 412]

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as missing:
        stock.execute_item_batch(
            [("create", ({"id": "m", "sku": "S1"},)), ("delete", ("no-such-item",))],
            partition_key="S1",
        )
    assert _statuses(missing.value) == [424, 404]
    assert _ids(stock, "S1") == ["S1"]


def test_a_batch_stays_in_its_partition(stock: ContainerProxy) -> None:
    stock.create_item({"id": "S2", "sku": "S2", "available": 5})

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as elsewhere:
        stock.execute_item_batch(
            [("create", ({"id": "x", "sku": "S1"},)), ("create", ({"id": "y", "sku": "S2"},))],
            partition_key="S1",
        )
    assert _statuses(elsewhere.value) == [424, 400]

    # An item of another partition is not found from this one.
    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as other:
        stock.execute_item_batch([("read", ("S2",))], partition_key="S1")
    assert _statuses(other.value) == [404]
    assert _ids(stock, "S1") == []


def test_a_batch_of_more_than_100_operations_is_refused(stock: ContainerProxy) -> None:
    operations: list[Any] = [("create", ({"id": f"i{n}", "sku": "S1"},)) for n in range(101)]
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
        stock.execute_item_batch(operations, partition_key="S1")
    assert caught.value.status_code == 400
    assert _ids(stock, "S1") == []
    stock.execute_item_batch(operations[:100], partition_key="S1")
    assert len(_ids(stock, "S1")) == 100


def test_a_filter_predicate_sees_the_property_names_as_written(stock: ContainerProxy) -> None:
    stock.create_item({"id": "S1", "sku": "S1", "available": 2, "updatedAt": "2026-01-01"})
    operations = [{"op": "incr", "path": "/available", "value": -1}]

    patched = stock.patch_item(
        "S1",
        partition_key="S1",
        patch_operations=operations,
        filter_predicate="FROM c WHERE c.updatedAt = '2026-01-01' AND NOT IS_DEFINED(c.legacy)",
    )
    assert patched["available"] == 1
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
        stock.patch_item(
            "S1",
            partition_key="S1",
            patch_operations=operations,
            filter_predicate="FROM c WHERE c.available >= 2",
        )
    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError):
        stock.patch_item(
            "S1",
            partition_key="S1",
            patch_operations=operations,
            etag="stale",
            match_condition=MatchConditions.IfNotModified,
        )
    assert stock.read_item("S1", partition_key="S1")["available"] == 1


# ----------------------------------------------------------------------------- item size


def test_items_over_2_mb_are_refused_with_413_and_nothing_is_stored(
    stock: ContainerProxy,
) -> None:
    huge = "x" * TWO_MB
    with pytest.raises(cosmos_errors.CosmosHttpResponseError) as created:
        stock.create_item({"id": "big", "sku": "S1", "blob": huge})
    assert created.value.status_code == 413

    small = stock.create_item({"id": "S1", "sku": "S1", "blob": "x" * (TWO_MB - 100)})
    for attempt in (
        lambda: stock.replace_item("S1", {"id": "S1", "sku": "S1", "blob": huge}),
        lambda: stock.upsert_item({"id": "S1", "sku": "S1", "blob": huge}),
        lambda: stock.patch_item(
            "S1",
            partition_key="S1",
            patch_operations=[{"op": "set", "path": "/more", "value": "y" * 200}],
        ),
    ):
        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as caught:
            attempt()
        assert caught.value.status_code == 413
    assert stock.read_item("S1", partition_key="S1")["_etag"] == small["_etag"]

    with pytest.raises(cosmos_errors.CosmosBatchOperationError) as batch:
        stock.execute_item_batch(
            [
                ("create", ({"id": "m", "sku": "S1"},)),
                ("patch", ("S1", [{"op": "set", "path": "/more", "value": "y" * 200}])),
            ],
            partition_key="S1",
        )
    assert _statuses(batch.value) == [424, 413]
    assert _ids(stock, "S1") == ["S1"]


# ------------------------------------------------------------------------------------ TTL


def _wait_for_next_seconds(seconds: float) -> None:
    time.sleep(seconds)


def test_container_default_ttl_expires_items_unless_they_say_minus_one(
    database: DatabaseProxy,
) -> None:
    container = _container(database, default_ttl=1)
    try:
        container.create_item({"id": "a", "sku": "S1"})
        container.create_item({"id": "forever", "sku": "S1", "ttl": -1})
        container.create_item({"id": "longer", "sku": "S1", "ttl": 3600})
        assert _ids(container, "S1") == ["a", "forever", "longer"]

        _wait_for_next_seconds(2.1)

        with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
            container.read_item("a", partition_key="S1")
        assert _ids(container, "S1") == ["forever", "longer"]
        cross = container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
        assert sorted(i["id"] for i in cross) == ["forever", "longer"]
        # Its id is free again, and writes to an expired item find nothing.
        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as patched:
            container.patch_item(
                "a", partition_key="S1", patch_operations=[{"op": "set", "path": "/x", "value": 1}]
            )
        assert patched.value.status_code == 404
        container.create_item({"id": "a", "sku": "S1"})
    finally:
        database.delete_container(container)


def test_with_default_ttl_minus_one_only_items_with_a_ttl_expire(
    database: DatabaseProxy,
) -> None:
    container = _container(database, default_ttl=-1)
    try:
        container.create_item({"id": "stays", "sku": "S1"})
        container.create_item({"id": "short", "sku": "S1", "ttl": 1})
        container.create_item({"id": "consumed", "sku": "S1"})
        # A write sets the clock again: patching a ttl onto an item starts its countdown.
        container.patch_item(
            "consumed",
            partition_key="S1",
            patch_operations=[{"op": "set", "path": "/ttl", "value": 1}],
        )
        with pytest.raises(cosmos_errors.CosmosHttpResponseError) as invalid:
            container.create_item({"id": "zero", "sku": "S1", "ttl": 0})
        assert invalid.value.status_code == 400

        _wait_for_next_seconds(2.1)

        assert _ids(container, "S1") == ["stays"]
        with pytest.raises(cosmos_errors.CosmosBatchOperationError) as batch:
            container.execute_item_batch([("read", ("short",))], partition_key="S1")
        assert _statuses(batch.value) == [404]
    finally:
        database.delete_container(container)


def test_without_a_container_ttl_an_item_ttl_does_nothing(stock: ContainerProxy) -> None:
    stock.create_item({"id": "a", "sku": "S1", "ttl": 1})
    stock.create_item({"id": "b", "sku": "S1", "ttl": 0})  # not checked where TTL is off

    _wait_for_next_seconds(2.1)

    assert _ids(stock, "S1") == ["a", "b"]
