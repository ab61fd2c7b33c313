"""Partner import files: a streaming reader that validates every row and packs valid orders
into queue-sized chunks. Pure: no I/O, no SDKs; the pipeline feeds it blocks of bytes.

- Formats: CSV (``external_id,customer_id,sku,quantity,unit_price,currency``; consecutive rows
  with the same ``external_id`` are the lines of one order) and JSON Lines (one order a line:
  the ``POST`` body plus ``externalId`` and ``customerId``).
- Memory is bounded by the largest line (:data:`MAX_LINE_CHARS`), one block of text
  (:data:`READ_CHARS`), the report buffer, one batch of CSV orders and the order keys of one
  part of the key space (a file with more keys is read once per part, see
  :class:`~shared.services.import_files.order_keys.KeyPartition`).
- Two ways through a CSV file, with the same verdicts: a block of clean lines (no quotes, one
  line ending, every field in a plain shape the models accept, see :data:`_PLAIN_IDENTIFIERS`) is
  judged a column at a time and its lines go into chunks as they are; any other block is judged
  row by row, each order by the API's models, which also word every reason. The plain shapes
  are a subset of what the models accept, so the fast way never accepts what the models refuse
  (``tests/unit/shared/services/test_import_files.py`` checks both ways agree on generated files).
- Chunks carry the valid orders as CSV text (see :class:`ChunkWriter`), the cheapest form to
  write and the most compact to send; the queue pass validates every order again.
- Whole-file rejections (:class:`FileRejectedError`) are decided on the first block, before any
  order is emitted: empty, binary, UTF-16, not UTF-8, wrong CSV header, header only. Anything
  later is a row-level rejection, so a file is never half-imported silently.
- Row numbers are the file's 1-based line numbers where the record starts (the CSV header is
  line 1), so a partner finds the row in any editor, also with quoted newlines.

Modules, one job each: :mod:`.formats` (which reader, whole-file checks on the start),
:mod:`.text` (bytes to bounded lines), :mod:`.rows` (checks and model validation both readers
share), :mod:`.csv_rows` (CSV row by row), :mod:`.csv_columns` (CSV a column at a time),
:mod:`.jsonl` (JSON Lines), :mod:`.order_keys` (the order keys seen), :mod:`.chunks` (the chunk
format, both ways), :mod:`.scanner` (one file's pass, putting them together).
"""

from shared.services.import_files.chunks import (
    CHUNK_VERSION,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_ORDERS,
    MAX_CHUNK_TEXT_BYTES,
    MAX_QUEUE_MESSAGE_BYTES,
    Chunk,
    ChunkEnvelope,
    ChunkOrder,
    ChunkWriter,
    InvalidChunkError,
    parse_chunk,
)
from shared.services.import_files.formats import (
    CSV_COLUMNS,
    CSV_HEADER,
    SNIFF_BYTES,
    FileFormat,
    FileRejectedError,
    file_format_for,
)
from shared.services.import_files.order_keys import FingerprintSet
from shared.services.import_files.rows import (
    FORMULA_PREFIXES,
    MAX_FIELD_CHARS,
    ImportedOrder,
    ImportedOrderIn,
    OrderSink,
    Rejection,
    ScanCounts,
)
from shared.services.import_files.scanner import ImportScanner
from shared.services.import_files.text import MAX_LINE_CHARS, READ_CHARS

__all__ = [
    "CHUNK_VERSION",
    "CSV_COLUMNS",
    "CSV_HEADER",
    "FORMULA_PREFIXES",
    "MAX_CHUNK_BYTES",
    "MAX_CHUNK_ORDERS",
    "MAX_CHUNK_TEXT_BYTES",
    "MAX_FIELD_CHARS",
    "MAX_LINE_CHARS",
    "MAX_QUEUE_MESSAGE_BYTES",
    "READ_CHARS",
    "SNIFF_BYTES",
    "Chunk",
    "ChunkEnvelope",
    "ChunkOrder",
    "ChunkWriter",
    "FileFormat",
    "FileRejectedError",
    "FingerprintSet",
    "ImportScanner",
    "ImportedOrder",
    "ImportedOrderIn",
    "InvalidChunkError",
    "OrderSink",
    "Rejection",
    "ScanCounts",
    "file_format_for",
    "parse_chunk",
]
