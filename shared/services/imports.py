"""Import status, as the import pipeline records it in the ``imports`` container."""

from __future__ import annotations

from shared.models import ImportStatus
from shared.repositories.imports import ImportStatusRepository


class ImportStatusService:
    def __init__(self, imports: ImportStatusRepository) -> None:
        self._imports = imports

    def get(self, import_id: str) -> ImportStatus:
        return ImportStatus.model_validate(self._imports.get(import_id))
