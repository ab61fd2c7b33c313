"""Smoke tests: the end-to-end scenarios run against any Orderflow base URL.

``python -m smoke --base-url URL [--token JWT] ...`` runs the same checks against the
local host and a deployed app (docs/SMOKE.md). Standard library HTTP only, plus the blob SDK for
the import scenario; every run uses fresh ids, so it can run repeatedly against production.
"""
