"""A small Service Bus test broker on python-qpid-proton that the unmodified ``azure-servicebus``
SDK (sync and async) talks to over plain AMQP 1.0, as it talks to the Service Bus emulator
(connection string with ``UseDevelopmentEmulator=true``: SASL ANONYMOUS, then ``$cbs``).

Supported, following documented Service Bus behaviour:

- ``$cbs`` put-token (SAS and JWT tokens are accepted, not validated: local use only);
- queues configured at start; a link to an unknown entity is detached with ``amqp:not-found``
  (the SDK raises ``MessagingEntityNotFoundError``);
- send: single messages, lists and ``ServiceBusMessageBatch`` (batch envelopes are split into
  their messages); message properties, application properties and body are kept as sent;
- duplicate detection by ``message_id`` within the duplicate window: a repeat is accepted and
  dropped;
- peek-lock receive (lock token = delivery tag) and receive-and-delete; complete, abandon
  (delivery count + 1, ``properties_to_modify`` applied), dead-letter with reason and
  description, defer (then ``receive_deferred_messages``), on the link or through
  ``$management`` ``update-disposition``;
- lock expiry (the message becomes available again, delivery count + 1) and ``renew-lock``;
- max delivery count: the message moves to ``<queue>/$DeadLetterQueue`` with reason
  ``MaxDeliveryCountExceeded``; the dead-letter queue is receivable and peekable;
- ``peek-message`` (``peek_messages``) without consuming, on queues and dead-letter queues.

- with ``data_dir`` (``--data-dir``), messages, dead-lettered messages and duplicate-detection
  ids are kept on disk (:mod:`localdev.servicebus.journal`): a restarted broker still has them,
  and messages that were locked are delivered again. Without it everything is in memory.

Not supported: topics and subscriptions, sessions, scheduled messages, transactions, message
TTL expiry, auto-forwarding, TLS, authorisation, and messages with more than one data section
outside a batch.
Header ``delivery-count`` is AMQP's count of *prior* attempts (0 on first delivery), as the
service sends it; the Functions host reports it plus one.
"""

from __future__ import annotations

import heapq
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    Delivery,
    Disposition,
    Endpoint,
    Handler,
    Link,
    Message,
    symbol,
    timestamp,
)
from proton.reactor import Container

from localdev.servicebus.journal import MessageJournal, SavedMessage

logger = logging.getLogger("localdev.servicebus")

DEAD_LETTER_SUFFIX: Final = "/$deadletterqueue"
MANAGEMENT_SUFFIX: Final = "/$management"
CBS_ADDRESS: Final = "$cbs"
MAX_MESSAGE_SIZE: Final = 256 * 1024  # Standard tier
MAX_DELIVERY_COUNT_EXCEEDED: Final = "MaxDeliveryCountExceeded"
_LINK_CREDIT: Final = 100
_VENDOR: Final = "com.microsoft"
_LOCK_LOST: Final = f"{_VENDOR}:message-lock-lost"
_DEAD_LETTER: Final = f"{_VENDOR}:dead-letter"
_SECTION_BODIES: Final = (0x75, 0x76, 0x77)  # data, amqp-sequence, amqp-value
COMPACT_AFTER_LINES: Final = 10_000  # journal lines before it is rewritten


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class BrokerConfig:
    queues: tuple[str, ...] = ("fulfillment",)
    max_delivery_count: int = 10
    lock_duration: float = 30.0  # seconds
    duplicate_window: float = 600.0  # seconds
    data_dir: Path | None = None  # keep messages on disk (None: in memory only)


@dataclass
class Stored:
    seq: int
    raw: bytes  # the message as the client encoded it (plus dead-letter properties)
    enqueued_ms: int
    delivery_count: int = 0  # prior delivery attempts
    deferred: bool = False
    lock_token: uuid.UUID | None = None
    locked_until_ms: int = 0
    delivery: Delivery | None = None  # outstanding transfer for the current lock, if on a link
    dead_letter_source: str | None = None


@dataclass
class Entity:
    name: str  # as configured: "fulfillment" or "fulfillment/$DeadLetterQueue"
    messages: dict[int, Stored] = field(default_factory=dict)
    available: list[int] = field(default_factory=list)  # heap of sequence numbers
    consumers: list[Link] = field(default_factory=list)
    dead_letter: Entity | None = None
    duplicates: dict[str, int] = field(default_factory=dict)  # message_id -> expiry (ms)

    def make_available(self, stored: Stored) -> None:
        stored.lock_token, stored.delivery, stored.locked_until_ms = None, None, 0
        heapq.heappush(self.available, stored.seq)

    def pop_available(self) -> Stored | None:
        while self.available:
            stored = self.messages.get(heapq.heappop(self.available))
            if stored is not None and stored.lock_token is None and not stored.deferred:
                return stored
        return None


# --- raw AMQP sections --------------------------------------------------------------------------


def _value_end(raw: bytes, pos: int) -> int:
    """Index after the AMQP value that starts at ``pos`` (primitive or described)."""
    code = raw[pos]
    if code == 0x00:  # described: descriptor, then value
        return _value_end(raw, _value_end(raw, pos + 1))
    category, pos = code & 0xF0, pos + 1
    fixed = {0x40: 0, 0x50: 1, 0x60: 2, 0x70: 4, 0x80: 8, 0x90: 16}
    if category in fixed:
        return pos + fixed[category]
    if category in (0xA0, 0xC0, 0xE0):
        return pos + 1 + raw[pos]
    if category in (0xB0, 0xD0, 0xF0):
        return pos + 4 + int.from_bytes(raw[pos : pos + 4], "big")
    raise ValueError(f"invalid AMQP constructor 0x{code:02x}")


def _sections(raw: bytes) -> list[tuple[int, bytes]]:
    """Split an encoded message into (section code, section value bytes); ValueError if it is
    not a sequence of message sections."""
    sections: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(raw):
        if raw[pos : pos + 2] != b"\x00\x53" or pos + 2 >= len(raw):
            raise ValueError("not a message section")
        code, start = raw[pos + 2], pos + 3
        if not 0x70 <= code <= 0x78:
            raise ValueError("not a message section")
        end = _value_end(raw, start)
        if end > len(raw):
            raise ValueError("truncated section")
        sections.append((code, raw[start:end]))
        pos = end
    return sections


def _binary_payload(value: bytes) -> bytes:
    if value[0] == 0xA0:
        return value[2 : 2 + value[1]]
    if value[0] == 0xB0:
        return value[5 : 5 + int.from_bytes(value[1:5], "big")]
    raise ValueError("data section without binary")


def _header(message: Message, delivery_count: int) -> bytes:
    """The header section with every field present: proton leaves out a zero delivery-count,
    which the SDK then reports as ``None`` instead of 0."""
    ttl_ms = round((message.ttl or 0) * 1000)
    fields = (
        (b"\x41" if message.durable else b"\x42")
        + b"\x50"
        + bytes([min(max(int(message.priority), 0), 255)])
        + (b"\x70" + ttl_ms.to_bytes(4, "big") if 0 < ttl_ms < 2**32 else b"\x40")
        + (b"\x41" if delivery_count == 0 else b"\x42")  # first-acquirer
        + b"\x70"
        + min(delivery_count, 2**32 - 1).to_bytes(4, "big")
    )
    return b"\x00\x53\x70\xc0" + bytes([len(fields) + 1, 5]) + fields


def split_transfer(raw: bytes) -> list[bytes]:
    """The messages in one transfer: a batch envelope (data sections that are themselves encoded
    messages, no application properties) gives each inner message; anything else is one."""
    try:
        sections = _sections(raw)
        data = [_binary_payload(value) for code, value in sections if code == 0x75]
        if data and all(code != 0x74 for code, _ in sections):
            inner = [_sections(payload) for payload in data]
            if all(any(code in _SECTION_BODIES for code, _ in parts) for parts in inner):
                return data
    except (ValueError, IndexError):
        pass
    return [raw]


# --- the broker ---------------------------------------------------------------------------------


def _entity_path(address: str | None) -> str:
    """``sb://host:port/queue``, ``amqps://host/queue`` or ``queue`` -> ``queue`` (lower case)."""
    address = address or ""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/").lower()


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None else [value]


class _Task(Handler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def on_timer_task(self, _event: Any) -> None:
        self._callback()


class ManagementError(Exception):
    def __init__(self, status: int, condition: str, description: str) -> None:
        super().__init__(description)
        self.status, self.condition, self.description = status, condition, description


class Broker(Handler):
    """The proton event handler: one instance serves every connection."""

    def __init__(self, host: str, port: int, config: BrokerConfig) -> None:
        super().__init__()
        self.url = f"{host}:{port}"
        self.config = config
        self.container: Container | None = None
        self.entities: dict[str, Entity] = {}
        for queue in config.queues:
            dlq = Entity(f"{queue}/$DeadLetterQueue")
            self.entities[queue.lower()] = Entity(queue, dead_letter=dlq)
            self.entities[dlq.name.lower()] = dlq
        self.locks: dict[uuid.UUID, tuple[Entity, Stored]] = {}
        self._sequence = 0
        self._replies: dict[tuple[int, str], list[Link]] = {}  # (connection id, source) -> links
        self._journal = MessageJournal(config.data_dir)
        self._restore()

    # --- persistence

    def _restore(self) -> None:
        """Load what the journal kept (no-op in memory); locks were lost with the old process."""
        if not self._journal.enabled:
            return
        now = _now_ms()
        restored = 0
        for name, saved in self._journal.load().items():
            entity = self.entities.get(name)
            if entity is None:
                logger.warning(
                    "dropped %d saved messages of unknown entity %s", len(saved.messages), name
                )
                continue
            entity.duplicates = {k: exp for k, exp in saved.duplicates.items() if exp > now}
            for message in saved.messages.values():
                stored = Stored(
                    message.seq,
                    message.raw,
                    message.enqueued_ms,
                    delivery_count=message.delivery_count,
                    deferred=message.deferred,
                    dead_letter_source=message.dead_letter_source,
                )
                entity.messages[stored.seq] = stored
                if not stored.deferred:
                    heapq.heappush(entity.available, stored.seq)
                self._sequence = max(self._sequence, stored.seq)
                restored += 1
        self._journal.rewrite(self._state())
        logger.info("restored %d messages from %s", restored, self.config.data_dir)

    def _state(self) -> list[tuple[str, list[SavedMessage], dict[str, int]]]:
        return [
            (entity.name, [self._saved(s) for s in entity.messages.values()], entity.duplicates)
            for entity in self.entities.values()
        ]

    def _flush(self) -> None:
        """Write what changed; once the journal is mostly history, rewrite it with what is left."""
        self._journal.flush()
        live = sum(len(entity.messages) for entity in self.entities.values())
        if self._journal.lines > COMPACT_AFTER_LINES and self._journal.lines > 4 * live:
            self._journal.rewrite(self._state())

    @staticmethod
    def _saved(stored: Stored) -> SavedMessage:
        return SavedMessage(
            stored.seq,
            stored.raw,
            stored.enqueued_ms,
            stored.delivery_count,
            stored.deferred,
            stored.dead_letter_source,
        )

    def _keep(self, entity: Entity, stored: Stored) -> None:
        self._journal.put(entity.name, self._saved(stored))

    # --- reactor lifecycle

    def on_reactor_init(self, event: Any) -> None:
        self.container = event.container
        event.container.listen(self.url)
        logger.info(
            "Service Bus broker listening on amqp://%s (queues: %s)",
            self.url,
            ", ".join(self.config.queues),
        )

    def on_connection_remote_open(self, event: Any) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.container = "localdev-servicebus"
            event.connection.open()

    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_link_remote_open(self, event: Any) -> None:
        link: Any = event.link  # proton's annotations do not allow None addresses
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.max_message_size = MAX_MESSAGE_SIZE
        if link.is_sender:  # the client receives
            address = link.remote_source.address or ""
            link.source.address = address
            link.target.address = link.remote_target.address
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
            path = _entity_path(address)
            if path == CBS_ADDRESS.lower() or path.endswith(MANAGEMENT_SUFFIX):
                key = (hash(link.connection), path)
                self._replies.setdefault(key, []).append(link)
                link.open()
                return
            entity = self.entities.get(path)
            if entity is None:
                self._refuse(link, address)
                return
            link.open()
            entity.consumers.append(link)
            self._dispatch(entity)
            self._flush()
        else:  # the client sends
            address = link.remote_target.address or ""
            link.target.address = address
            link.source.address = link.remote_source.address
            path = _entity_path(address)
            known = (
                path == CBS_ADDRESS.lower()
                or (
                    path.endswith(MANAGEMENT_SUFFIX)
                    and path.removesuffix(MANAGEMENT_SUFFIX) in self.entities
                )
                or (path in self.entities and not path.endswith(DEAD_LETTER_SUFFIX))
            )
            if not known:
                self._refuse(link, address)
                return
            link.open()
            link.flow(_LINK_CREDIT)

    def _refuse(self, link: Link, address: str) -> None:
        # Attach, then detach with the error (``MessagingEntityNotFoundError`` in the SDK).
        link.open()
        link.condition = Condition(
            "amqp:not-found",
            f"The messaging entity '{address}' could not be found. To know more visit "
            "https://aka.ms/sbResourceMgrExceptions.",
        )
        link.close()

    def on_link_remote_close(self, event: Any) -> None:
        self._forget(event.link)
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    def on_transport_closed(self, event: Any) -> None:
        connection = event.connection
        if connection is None:
            return
        link = connection.link_head(0)
        while link is not None:
            self._forget(link)
            link = link.next(0)
        for key in [key for key in self._replies if key[0] == hash(connection)]:
            del self._replies[key]

    def _forget(self, link: Link) -> None:
        """A closed receiver link: its locks stay until they expire (as in Service Bus)."""
        for entity in self.entities.values():
            if link in entity.consumers:
                entity.consumers.remove(link)
        for links in self._replies.values():
            if link in links:
                links.remove(link)

    # --- flow and deliveries

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            entity = self.entities.get(_entity_path(link.source.address))
            if entity is not None:
                self._dispatch(entity)
                self._flush()

    def on_delivery(self, event: Any) -> None:
        delivery: Delivery = event.delivery
        link = delivery.link
        try:
            if link.is_receiver:
                self._incoming(link, delivery)
            elif delivery.updated or delivery.remote_state or delivery.settled:
                self._outcome(delivery)
        except Exception:  # never let one peer's delivery stop the broker
            logger.exception("delivery on %s failed", link.name)
        # On disk before the peer learns the outcome (frames go out after this returns).
        self._flush()

    def _incoming(self, link: Link, delivery: Delivery) -> None:
        if delivery.partial or not delivery.readable:
            return
        raw = link.recv(delivery.pending) or b""
        link.advance()
        path = _entity_path(link.target.address)
        try:
            if path == CBS_ADDRESS.lower():
                self._cbs(link, raw)
            elif path.endswith(MANAGEMENT_SUFFIX):
                self._management(link, path.removesuffix(MANAGEMENT_SUFFIX), raw)
            else:
                for message in split_transfer(raw):
                    self._enqueue(self.entities[path], message)
            delivery.update(Disposition.ACCEPTED)
        except Exception as error:  # hostile input: reject the transfer, keep serving
            logger.warning("rejected a transfer to %s: %s", path, error)
            delivery.local.condition = Condition("amqp:decode-error", str(error)[:200])
            delivery.update(Disposition.REJECTED)
        delivery.settle()
        if link.credit < _LINK_CREDIT // 2:
            link.flow(_LINK_CREDIT - link.credit)

    def _enqueue(self, entity: Entity, raw: bytes) -> None:
        message = Message()
        message.decode(raw)  # validates before anything is stored
        now = _now_ms()
        if message.id is not None and self.config.duplicate_window > 0:
            key = str(message.id)
            entity.duplicates = {k: exp for k, exp in entity.duplicates.items() if exp > now}
            if key in entity.duplicates:
                logger.info("dropped duplicate message_id %s on %s", key, entity.name)
                return
            entity.duplicates[key] = now + int(self.config.duplicate_window * 1000)
            self._journal.duplicate(entity.name, key, entity.duplicates[key])
        self._sequence += 1
        entity.messages[self._sequence] = Stored(self._sequence, raw, now)
        self._keep(entity, entity.messages[self._sequence])
        heapq.heappush(entity.available, self._sequence)
        self._dispatch(entity)

    def _dispatch(self, entity: Entity) -> None:
        turn = 0
        while entity.available:
            ready = [link for link in entity.consumers if link.credit > 0]
            if not ready:
                return
            stored = entity.pop_available()
            if stored is None:
                return
            link = ready[turn % len(ready)]
            turn += 1
            self._send(entity, link, stored)

    def _send(self, entity: Entity, link: Any, stored: Stored) -> None:
        settled = link.snd_settle_mode == Link.SND_SETTLED
        token = uuid.uuid4()
        if not settled:
            self._lock(entity, stored, token)
        delivery = link.delivery(token.bytes_le)
        delivery.lock_token = token  # kept in the delivery's record (the tag reads back as text)
        link.stream(self._encode(stored, locked=not settled))
        link.advance()
        if settled:  # receive-and-delete
            delivery.settle()
            del entity.messages[stored.seq]
            self._journal.delete(entity.name, stored.seq)
        else:
            stored.delivery = delivery

    def _lock(self, entity: Entity, stored: Stored, token: uuid.UUID) -> None:
        stored.lock_token = token
        stored.locked_until_ms = _now_ms() + int(self.config.lock_duration * 1000)
        self.locks[token] = (entity, stored)
        self._schedule_expiry(token, self.config.lock_duration)

    def _schedule_expiry(self, token: uuid.UUID, delay: float) -> None:
        assert self.container is not None  # noqa: S101 - set in on_reactor_init
        self.container.schedule(max(delay, 0.0), _Task(lambda: self._lock_check(token)))

    def _lock_check(self, token: uuid.UUID) -> None:
        found = self.locks.get(token)
        if found is None:
            return
        remaining = (found[1].locked_until_ms - _now_ms()) / 1000
        if remaining > 0:  # renewed meanwhile
            self._schedule_expiry(token, remaining)
            return
        self._release(token, increment=True)
        self._flush()

    def _encode(self, stored: Stored, *, locked: bool) -> bytes:
        message = Message()
        message.decode(stored.raw)
        annotations = dict(message.annotations or {})
        annotations[symbol("x-opt-sequence-number")] = stored.seq
        annotations[symbol("x-opt-enqueued-time")] = timestamp(stored.enqueued_ms)
        if stored.deferred:
            annotations[symbol("x-opt-message-state")] = 1
        if locked:
            annotations[symbol("x-opt-locked-until")] = timestamp(stored.locked_until_ms)
        if stored.dead_letter_source:
            annotations[symbol("x-opt-deadletter-source")] = stored.dead_letter_source
        message.annotations = annotations
        sections = [
            b"\x00\x53" + bytes([code]) + value
            for code, value in _sections(message.encode())
            if code != 0x70
        ]
        return _header(message, stored.delivery_count) + b"".join(sections)

    # --- settlement

    def _outcome(self, delivery: Delivery) -> None:
        tag = getattr(delivery, "lock_token", None)
        token: uuid.UUID = tag if isinstance(tag, uuid.UUID) else uuid.UUID(int=0)
        found = self.locks.get(token)
        state = delivery.remote_state
        if found is None or found[1].delivery != delivery:
            if not delivery.settled and state:
                delivery.local.condition = Condition(_LOCK_LOST, "The lock supplied is invalid.")
                delivery.update(Disposition.REJECTED)
            delivery.settle()
            return
        remote: Any = delivery.remote
        if state == Disposition.ACCEPTED:
            self._settle(token, "completed")
        elif state == Disposition.REJECTED:
            info = (remote.condition.info if remote.condition else None) or {}
            self._settle(
                token,
                "suspended",
                reason=info.get("DeadLetterReason"),
                description=info.get("DeadLetterErrorDescription"),
            )
        elif state == Disposition.MODIFIED and remote.undeliverable:
            self._settle(token, "defered", properties=remote.annotations)
        elif state == Disposition.MODIFIED:
            self._settle(token, "abandoned", properties=remote.annotations)
        elif state == Disposition.RELEASED:  # never processed (the SDK releases its buffer)
            self._release(token, increment=False)
        elif not delivery.settled:
            return  # a non-terminal state
        else:  # settled without an outcome: treat as released
            self._settle(token, "abandoned")
        if not delivery.settled and state:
            # Echo the applied outcome; a rejected outcome *with* an error means "not applied".
            if state == Disposition.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            delivery.update(state)
        delivery.settle()

    def _settle(
        self,
        token: uuid.UUID,
        status: str,
        *,
        reason: Any = None,
        description: Any = None,
        properties: dict[Any, Any] | None = None,
    ) -> None:
        entity, stored = self.locks[token]
        if status == "completed":
            del self.locks[token]
            del entity.messages[stored.seq]
            stored.lock_token = None
            self._journal.delete(entity.name, stored.seq)
        elif status == "suspended":
            del self.locks[token]
            self._dead_letter(entity, stored, reason, description)
        elif status == "defered":
            del self.locks[token]
            stored.deferred = True
            self._modify(stored, properties)
            stored.lock_token, stored.delivery = None, None
            self._keep(entity, stored)
        else:  # abandoned
            self._modify(stored, properties)
            self._release(token, increment=True)

    def _release(self, token: uuid.UUID, *, increment: bool) -> None:
        entity, stored = self.locks.pop(token)
        if increment:
            stored.delivery_count += 1
        stored.delivery = None
        if (
            entity.dead_letter is not None
            and increment
            and stored.delivery_count >= self.config.max_delivery_count
        ):
            self._dead_letter(
                entity,
                stored,
                MAX_DELIVERY_COUNT_EXCEEDED,
                "Message could not be consumed after "
                f"{self.config.max_delivery_count} delivery attempts.",
            )
            return
        self._keep(entity, stored)
        if stored.deferred:
            stored.lock_token, stored.locked_until_ms = None, 0
            return
        entity.make_available(stored)
        self._dispatch(entity)

    def _modify(self, stored: Stored, properties: dict[Any, Any] | None) -> None:
        if not properties:
            return
        message: Any = Message()
        message.decode(stored.raw)
        merged = dict(message.properties or {})
        merged.update({str(key): value for key, value in properties.items()})
        message.properties = merged
        stored.raw = message.encode()

    def _dead_letter(self, entity: Entity, stored: Stored, reason: Any, description: Any) -> None:
        entity.messages.pop(stored.seq, None)
        self._journal.delete(entity.name, stored.seq)
        target = entity.dead_letter
        if target is None:  # dead-lettering from the dead-letter queue just removes it there
            return
        message: Any = Message()
        message.decode(stored.raw)
        properties = dict(message.properties or {})
        if reason is not None:
            properties["DeadLetterReason"] = str(reason)
        if description is not None:
            properties["DeadLetterErrorDescription"] = str(description)
        message.properties = properties
        stored.raw = message.encode()
        stored.deferred = False
        stored.dead_letter_source = entity.name
        target.messages[stored.seq] = stored
        self._keep(target, stored)
        target.make_available(stored)
        self._dispatch(target)

    # --- $cbs and $management

    def _reply(self, link: Link, path: str, request: Any, reply: Any) -> None:
        links = self._replies.get((hash(link.connection), path), [])
        chosen: Any = next(
            (candidate for candidate in links if candidate.target.address == request.reply_to),
            links[0] if links else None,
        )
        if chosen is None:
            logger.warning("no reply link for %s", path)
            return
        reply.correlation_id = request.id
        reply.address = request.reply_to
        delivery = chosen.delivery(uuid.uuid4().bytes)
        chosen.stream(reply.encode())
        chosen.advance()
        delivery.settle()

    def _cbs(self, link: Link, raw: bytes) -> None:
        request: Any = Message()
        request.decode(raw)
        props: dict[str, Any] = request.properties or {}
        audience = str(props.get("name", ""))
        path = _entity_path(audience).removesuffix(MANAGEMENT_SUFFIX)
        if props.get("operation") != "put-token" or not request.body:
            status, description = 400, "Bad request: expected a put-token operation with a token"
        elif path and path not in self.entities:  # the service's answer for a missing entity
            status, description = 404, f"The messaging entity '{audience}' could not be found."
        else:
            status, description = 202, "Accepted"
        reply = Message(properties={"status-code": status, "status-description": description})
        self._reply(link, CBS_ADDRESS.lower(), request, reply)

    def _management(self, link: Link, path: str, raw: bytes) -> None:
        request: Any = Message()
        request.decode(raw)
        operation = str((request.properties or {}).get("operation", ""))
        body = request.body if isinstance(request.body, dict) else {}
        entity = self.entities[path]
        try:
            status, value = self._operation(entity, operation.removeprefix(f"{_VENDOR}:"), body)
            properties: dict[str, Any] = {"statusCode": status, "statusDescription": "OK"}
        except ManagementError as error:
            status, value = error.status, None
            properties = {
                "statusCode": error.status,
                "statusDescription": error.description,
                "errorCondition": symbol(error.condition),
            }
        self._reply(
            link, f"{path}{MANAGEMENT_SUFFIX}", request, Message(body=value, properties=properties)
        )

    def _operation(self, entity: Entity, operation: str, body: dict[Any, Any]) -> tuple[int, Any]:
        if operation == "peek-message":
            start = int(body.get("from-sequence-number", 1))
            count = max(0, int(body.get("message-count", 1)))
            found = [entity.messages[seq] for seq in sorted(entity.messages) if seq >= start]
            found = found[:count]
            if not found:
                return 204, None
            return 200, {"messages": [{"message": self._encode(s, locked=False)} for s in found]}
        if operation == "renew-lock":
            expirations = []
            for token in self._tokens(body):
                stored = self.locks[token][1]
                stored.locked_until_ms = _now_ms() + int(self.config.lock_duration * 1000)
                expirations.append(timestamp(stored.locked_until_ms))
            return 200, {"expirations": Array(cast(Any, UNDESCRIBED), Data.TIMESTAMP, *expirations)}
        if operation == "receive-by-sequence-number":
            messages = []
            for seq in _as_list(body.get("sequence-numbers")):
                wanted = entity.messages.get(int(seq))
                if wanted is None or not wanted.deferred or wanted.lock_token is not None:
                    raise ManagementError(
                        404, f"{_VENDOR}:message-not-found", f"Message {seq} not found"
                    )
                token = uuid.uuid4()
                self._lock(entity, wanted, token)
                messages.append({"message": self._encode(wanted, locked=True), "lock-token": token})
            return 200, {"messages": messages}
        if operation == "update-disposition":
            status = str(body.get("disposition-status", ""))
            if status not in ("completed", "abandoned", "suspended", "defered"):
                raise ManagementError(400, "amqp:invalid-field", f"bad status {status!r}")
            for token in self._tokens(body):
                properties = body.get("properties-to-modify")
                self._settle(
                    token,
                    status,
                    reason=body.get("deadletter-reason"),
                    description=body.get("deadletter-description"),
                    properties=properties if isinstance(properties, dict) else None,
                )
            return 200, {}
        raise ManagementError(501, "amqp:not-implemented", f"{operation!r} is not supported")

    def _tokens(self, body: dict[Any, Any]) -> Iterator[uuid.UUID]:
        tokens = [
            t if isinstance(t, uuid.UUID) else uuid.UUID(str(t))
            for t in _as_list(body.get("lock-tokens"))
        ]
        for token in tokens:
            if token not in self.locks:
                raise ManagementError(
                    410,
                    _LOCK_LOST,
                    "The lock supplied is invalid. Either the lock expired, or "
                    "the message has already been removed from the queue.",
                )
        yield from tokens


def serve(host: str, port: int, config: BrokerConfig) -> None:
    """Run the broker until the process is stopped."""
    Container(Broker(host, port, config)).run()
