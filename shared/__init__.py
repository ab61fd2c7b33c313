"""Orderflow's own library: configuration, clients, secrets, domain services and repositories.

Never imports ``azure.functions`` or ``blueprints``: everything here runs and is tested without
the Functions host.
"""

__version__ = "0.1.0"
