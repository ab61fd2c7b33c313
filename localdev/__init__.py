"""Local development: stand-ins for Azure services (``stack``) and a local Functions host
(``host``), so the whole app runs on one machine without Docker or Core Tools."""
