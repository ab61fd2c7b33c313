"""A chunk whose error declares it can never be applied is parked in the chunk queue's poison
queue at once, on Azurite, in the encoding the host itself uses there (base64 text)."""

from __future__ import annotations

import uuid

import azure.functions as func
import pytest

from blueprints import imports
from shared.clients import get_queue
from shared.errors import MessageOutcome, NotFoundError
from shared.names import IMPORT_CHUNKS_POISON_QUEUE
from shared.services import providers

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
