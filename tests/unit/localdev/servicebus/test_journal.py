"""The Service Bus test broker's journal: what is replayed after a restart, and compaction."""

from __future__ import annotations

from pathlib import Path

from localdev.servicebus.journal import JOURNAL_FILE, MessageJournal, SavedMessage


def message(seq: int, count: int = 0, *, source: str | None = None) -> SavedMessage:
    return SavedMessage(seq, f"body-{seq}".encode(), 1000 + seq, count, False, source)


def test_the_last_state_of_each_message_is_replayed(tmp_path: Path) -> None:
    journal = MessageJournal(tmp_path)
    journal.put("fulfillment", message(1))
    journal.put("fulfillment", message(2))
    journal.duplicate("fulfillment", "cmd-1", 99_000)
    journal.flush()
    journal.put("fulfillment", message(2, count=1))  # abandoned once
    journal.delete("fulfillment", 1)  # completed
    journal.delete("fulfillment", 2)  # dead-lettered: moved ...
    journal.put("fulfillment/$DeadLetterQueue", message(2, count=1, source="fulfillment"))
    journal.flush()

    saved = MessageJournal(tmp_path).load()

    assert saved["fulfillment"].messages == {}
    assert saved["fulfillment"].duplicates == {"cmd-1": 99_000}
    assert saved["fulfillment/$deadletterqueue"].messages == {
        2: message(2, count=1, source="fulfillment")
    }


def test_nothing_is_written_before_a_flush_and_a_torn_last_line_is_skipped(
    tmp_path: Path,
) -> None:
    journal = MessageJournal(tmp_path)
    journal.put("fulfillment", message(1))
    assert MessageJournal(tmp_path).load() == {}
    journal.flush()
    with (tmp_path / JOURNAL_FILE).open("a", encoding="utf-8") as out:
        out.write('{"op":"put","entity":"fulfillment","seq":2,"raw"')  # the process died here

    assert MessageJournal(tmp_path).load()["fulfillment"].messages == {1: message(1)}


def test_a_rewrite_keeps_only_what_is_left(tmp_path: Path) -> None:
    journal = MessageJournal(tmp_path)
    for seq in range(1, 51):
        journal.put("fulfillment", message(seq))
        journal.delete("fulfillment", seq)
    journal.put("fulfillment", message(51))
    journal.flush()
    assert journal.lines == 101

    journal.rewrite([("fulfillment", [message(51)], {"cmd-51": 5})])

    assert journal.lines == 2
    assert len((tmp_path / JOURNAL_FILE).read_text(encoding="utf-8").splitlines()) == 2
    saved = MessageJournal(tmp_path).load()["fulfillment"]
    assert (saved.messages, saved.duplicates) == ({51: message(51)}, {"cmd-51": 5})


def test_without_a_directory_nothing_is_kept(tmp_path: Path) -> None:
    journal = MessageJournal(None)
    journal.put("fulfillment", message(1))
    journal.flush()
    assert not journal.enabled
    assert journal.load() == {}
