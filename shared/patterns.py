"""The shapes of the ids Orderflow accepts, as regular expressions: one source for the API's
models, the HTTP handlers (which check path segments without loading pydantic), the OpenAPI
document and the import reader."""

from typing import Final

# Customer, order, external ids and SKUs become Cosmos ids and URL segments: no '/', '\\', '?',
# '#', and no surprises in logs.
IDENTIFIER: Final = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
IDENTIFIER_PATTERN: Final = f"^{IDENTIFIER}$"
# An import id is the uploaded blob's name at the container root: no separators or control
# characters, and not "." or "..", which clients fold away as URL segments (the Cosmos SDK
# would read the container itself instead of a document).
IMPORT_ID_PATTERN: Final = r"^(?!\.\.?$)[^/\\?#\x00-\x1f\x7f]{1,255}$"
