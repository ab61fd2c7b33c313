"""The Cosmos stand-in behind the launcher, driven with the unmodified azure-cosmos SDK.

Covers the launcher's fixes (404 instead of 500, partition-scoped queries, Cosmos-shaped error
bodies) and that the behaviour the app relies on still works (CRUD, 409, 412, paging).
Each test works in its own container of a separate database, away from the app's data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from azure.core import MatchConditions
from azure.core.paging import PageIterator
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos import exceptions as cosmos_errors

from localdev.stack import COSMOS_EMULATOR_KEY, LocalStack

pytestmark = pytest.mark.integration

TEST_DATABASE = "standin-tests"


@pytest.fixture(scope="module")
def database(local_stack: LocalStack) -> Iterator[DatabaseProxy]:
    with CosmosClient(
        local_stack.cosmos_endpoint, COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False
    ) as client:
        yield client.create_database_if_not_exists(TEST_DATABASE)


@pytest.fixture
def orders(database: DatabaseProxy) -> Iterator[ContainerProxy]:
    """A fresh container partitioned like the app's ``orders``."""
    container = database.create_container(
        f"orders-{uuid.uuid4().hex[:8]}", PartitionKey(path="/customerId")
    )
    try:
        yield container
    finally:
        database.delete_container(container)


def _ids(items: Any) -> list[str]:
    return [item["id"] for item in items]


def _error_body(error: cosmos_errors.CosmosHttpResponseError) -> dict[str, Any]:
    assert error.response is not None
    body: dict[str, Any] = json.loads(error.response.text())
    return body


def test_reading_a_missing_item_is_a_cosmos_shaped_404(orders: ContainerProxy) -> None:
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError) as caught:
        orders.read_item("no-such-order", partition_key="c1")

    assert caught.value.status_code == 404
    assert _error_body(caught.value)["code"] == "NotFound"


def test_reading_an_item_in_the_wrong_partition_is_404(orders: ContainerProxy) -> None:
    orders.create_item({"id": "o1", "customerId": "c1"})

    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        orders.read_item("o1", partition_key="c2")
    assert orders.read_item("o1", partition_key="c1")["customerId"] == "c1"


def test_missing_database_and_container_reads_are_404(
    local_stack: LocalStack, database: DatabaseProxy
) -> None:
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError) as missing_container:
        database.get_container_client("no-such-container").read()
    assert _error_body(missing_container.value)["code"] == "NotFound"

    with (
        CosmosClient(
            local_stack.cosmos_endpoint, COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False
        ) as client,
        pytest.raises(cosmos_errors.CosmosResourceNotFoundError) as missing_database,
    ):
        client.get_database_client("no-such-database").read()
    assert _error_body(missing_database.value)["code"] == "NotFound"


def test_query_with_partition_key_returns_only_that_partition(orders: ContainerProxy) -> None:
    for customer, count in (("alice", 3), ("bob", 2)):
        for n in range(count):
            orders.create_item({"id": f"{customer}-{n}", "customerId": customer, "n": n})

    # No WHERE on the partition key: only the header scopes these queries.
    assert sorted(_ids(orders.query_items("SELECT * FROM c", partition_key="alice"))) == [
        "alice-0",
        "alice-1",
        "alice-2",
    ]
    assert sorted(_ids(orders.query_items("SELECT * FROM c", partition_key="bob"))) == [
        "bob-0",
        "bob-1",
    ]
    assert _ids(orders.query_items("SELECT * FROM c", partition_key="carol")) == []
    ordered = orders.query_items(
        "SELECT * FROM c WHERE c.n >= @min ORDER BY c.n DESC",
        parameters=[{"name": "@min", "value": 1}],
        partition_key="alice",
    )
    assert _ids(ordered) == ["alice-2", "alice-1"]
    # A VALUE query yields plain values, not the dicts the SDK's annotations promise.
    bob_count: list[Any] = list(
        orders.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="bob")
    )
    assert bob_count == [2]
    # Cross-partition queries still see every partition.
    everything = orders.query_items("SELECT * FROM c", enable_cross_partition_query=True)
    assert len(_ids(everything)) == 5


def test_partition_scoped_query_pages_stay_in_the_partition(orders: ContainerProxy) -> None:
    for n in range(5):
        orders.create_item({"id": f"a-{n}", "customerId": "a", "n": n})
        orders.create_item({"id": f"b-{n}", "customerId": "b", "n": n})

    pages = cast(
        PageIterator[dict[str, Any]],
        orders.query_items(
            "SELECT * FROM c ORDER BY c.n", partition_key="a", max_item_count=2
        ).by_page(),
    )
    first = next(pages)
    first_ids = _ids(first)
    assert first_ids == ["a-0", "a-1"]
    assert pages.continuation_token is not None

    resumed = orders.query_items(
        "SELECT * FROM c ORDER BY c.n", partition_key="a", max_item_count=2
    ).by_page(pages.continuation_token)
    rest = [item_id for page in resumed for item_id in _ids(page)]
    assert rest == ["a-2", "a-3", "a-4"]


def test_crud_conflict_and_stale_etag_still_work(orders: ContainerProxy) -> None:
    created = orders.create_item({"id": "o1", "customerId": "c1", "status": "pending"})
    assert orders.read_item("o1", partition_key="c1")["status"] == "pending"

    with pytest.raises(cosmos_errors.CosmosResourceExistsError) as duplicate:
        orders.create_item({"id": "o1", "customerId": "c1"})
    assert duplicate.value.status_code == 409

    replaced = orders.replace_item(
        "o1",
        {**created, "status": "paid"},
        etag=created["_etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    assert replaced["_etag"] != created["_etag"]

    with pytest.raises(cosmos_errors.CosmosAccessConditionFailedError) as stale:
        orders.replace_item(
            "o1",
            {**created, "status": "cancelled"},
            etag=created["_etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    assert stale.value.status_code == 412
    assert _error_body(stale.value)["code"] == "PreconditionFailed"

    orders.upsert_item({"id": "o2", "customerId": "c1", "status": "pending"})
    assert orders.read_item("o2", partition_key="c1")["status"] == "pending"
    orders.delete_item("o1", partition_key="c1")
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        orders.read_item("o1", partition_key="c1")
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        orders.delete_item("o1", partition_key="c1")


def test_queries_over_many_items_and_joins_keep_their_rows_and_order(
    orders: ContainerProxy,
) -> None:
    """The launcher rewrites how compiled queries collect their FROM/JOIN rows (linear instead
    of quadratic in the container's size): the rows, their order and paging stay the same."""
    items = 3_000
    for first in range(0, items, 100):
        customer = f"c-{first // 100:02d}"
        orders.execute_item_batch(
            [
                (
                    "create",
                    (
                        {
                            "id": f"o-{n:04d}",
                            "customerId": customer,
                            "n": (n * 7) % items,
                            "tags": [f"t{k}" for k in range(n % 4)],
                        },
                    ),
                )
                for n in range(first, first + 100)
            ],
            partition_key=customer,
        )
    by_n = {(n * 7) % items: f"o-{n:04d}" for n in range(items)}

    pages = orders.query_items(
        "SELECT * FROM c WHERE c.n >= @low ORDER BY c.n ASC",
        parameters=[{"name": "@low", "value": 10}],
        enable_cross_partition_query=True,
        max_item_count=500,
    ).by_page()
    ordered = [item["id"] for page in pages for item in page]
    assert ordered == [by_n[n] for n in range(10, items)]

    pairs = orders.query_items(
        "SELECT c.id, t FROM c JOIN t IN c.tags WHERE c.n < 20",
        enable_cross_partition_query=True,
    )
    expected = {(by_n[n], f"t{k}") for n in range(20) for k in range(int(by_n[n][2:]) % 4)}
    got = [(row["id"], row["t"]) for row in pairs]
    assert len(got) == len(expected)
    assert set(got) == expected

    joined: list[Any] = list(
        orders.query_items(
            "SELECT VALUE COUNT(1) FROM c JOIN t IN c.tags", enable_cross_partition_query=True
        )
    )
    assert sum(joined) == sum(n % 4 for n in range(items))
