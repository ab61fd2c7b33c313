"""The API's permission names, defined once.

Entra ID: ``ORDERS_SCOPE`` is a delegated permission (``oauth2PermissionScopes``, in a user
token's ``scp`` claim); the others are application roles (``appRoles``, in ``roles``), granted to
a client application (client credentials) or assigned to users and groups (then they appear in
delegated tokens too). The infrastructure's app registration and its contract test read these.
"""

from __future__ import annotations

from typing import Final

from shared.errors import BEARER_REALM

# Delegated: a signed-in customer's app may act on that customer's own orders.
ORDERS_SCOPE: Final = "Orders.ReadWrite"
# Application roles.
ORDERS_ALL_ROLE: Final = "Orders.ReadWrite.All"  # shop backend, partner, support: any customer
INVENTORY_ROLE: Final = "Inventory.ReadWrite"  # set stock levels
IMPORTS_READ_ROLE: Final = "Imports.Read"  # read import status

DELEGATED_SCOPES: Final = (ORDERS_SCOPE,)
APP_ROLES: Final = (ORDERS_ALL_ROLE, INVENTORY_ROLE, IMPORTS_READ_ROLE)

DESCRIPTIONS: Final = {
    ORDERS_SCOPE: "Create, read, list and cancel the signed-in customer's own orders",
    ORDERS_ALL_ROLE: "Create, read, list and cancel the orders of any customer",
    INVENTORY_ROLE: "Set stock levels",
    IMPORTS_READ_ROLE: "Read the status of partner file imports",
}

# The realm of every WWW-Authenticate challenge (RFC 6750 section 3).
REALM: Final = BEARER_REALM
# The audience of the local issuer's tokens (local.settings.json.sample, the local stack).
LOCAL_AUDIENCE: Final = "api://orderflow-local"
