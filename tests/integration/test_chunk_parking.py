"""A chunk whose error declares it can never be applied is parked in the chunk queue's poison
queue at once, on Azurite, in the encoding the host itself uses there (base64 text)."""

from __future__ import annotations

import base64
import json
import uuid
import zlib

import azure.functions as func
import pytest

from blueprints import imports
from shared.clients import get_queue
from shared.errors import MessageOutcome, NotFoundError
from shared.names import IMPORT_CHUNKS_POISON_QUEUE
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.services import providers
from shared.services.import_files import MAX_CHUNK_BYTES, MAX_CHUNK_TEXT_BYTES, InvalidChunkError

pytestmark = pytest.mark.integration


class _FailingPipeline:
    def process_chunk(self, body: bytes) -> None:
        raise NotFoundError("import", "gone")


@pytest.mark.usefixtures("app_settings")
def test_a_parked_chunk_lands_in_the_poison_queue_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NotFoundError, "on_message", MessageOutcome.PARK)
    monkeypatch.setattr(providers, "import_pipeline", _FailingPipeline)
    body = f'{{"chunk": "{uuid.uuid4().hex}"}}'
    handler = imports.create_imported_orders.build().get_user_function()

    handler(func.QueueMessage(id="m-1", body=body.encode()), None)  # returns: completed

    poison = get_queue(IMPORT_CHUNKS_POISON_QUEUE)
    found = [m for m in poison.receive_messages(max_messages=32) if m.content == body]
    assert len(found) == 1
    poison.delete_message(found[0])


@pytest.mark.usefixtures("app_settings")
def test_a_decompression_bomb_chunk_fails_with_its_reason_before_any_write() -> None:
    # About 3 KB of zlib for 2.85 MB of text (15x the limit): small on the queue, large inflated.
    bomb = zlib.compress(b"E1,c1,S,1,1.00,EUR\n" * 150_000, 9)
    run_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "v": 3,
            "importId": f"bomb-{run_id[:8]}.csv",
            "runId": run_id,
            "chunk": 0,
            "rows": [[2, 150_000]],
            "z": base64.b64encode(bomb).decode(),
        }
    )
    assert len(body) < MAX_CHUNK_BYTES
    handler = imports.create_imported_orders.build().get_user_function()

    # Not an app error: the host retries it and parks it after maxDequeueCount (host.json),
    # as any message that is not a chunk; the reason is in the exception the host logs.
    with pytest.raises(InvalidChunkError, match=f"larger than {MAX_CHUNK_TEXT_BYTES} bytes"):
        handler(func.QueueMessage(id="m-2", body=body.encode()), None)

    assert CosmosImportRunRepository().read(f"bomb-{run_id[:8]}.csv") is None
