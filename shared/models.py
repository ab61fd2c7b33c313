"""Domain models (pydantic v2): the same models validate API requests, import rows and stored
documents, and generate the OpenAPI schema. A leaf module: imports nothing from the app.

Money is ``Decimal`` end to end and travels as a decimal *string* ("12.50") so no JSON parser
on either side turns it into a binary float.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from shared.patterns import IDENTIFIER_PATTERN

MAX_LINES: Final = 100
MAX_QUANTITY: Final = 1_000_000
MAX_UNIT_PRICE: Final = Decimal("1000000.00")
MONEY_PLACES: Final = Decimal("0.01")
# The one spelling of a money string: ASCII digits, at most 2 places, no exponent, no spaces.
_DECIMAL_STRING: Final = re.compile(r"-?[0-9]+(\.[0-9]{1,2})?")


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ISO 4217 active currency codes (funds and precious-metal codes excluded).
ISO_4217: Final = _codes(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER
    ZAR ZMW ZWG
    """
)
# Currencies without minor units: a price like "100.50" JPY is a client bug, not a price.
ZERO_DECIMAL_CURRENCIES: Final = _codes(
    """
    BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF
    """
)

# Ids become Cosmos ids and URL segments: no '/', '\\', '?', '#', and no surprises in logs.
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, strict=True)]
Sku = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, strict=True)]


def _parse_money(value: object) -> Decimal:
    """Money must be a decimal string (or int); a JSON float is refused: it is already rounded."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError("must be a decimal string such as '12.50'")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a decimal string such as '12.50'") from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("must have at most 2 decimal places")
    if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
        # Decimal() also takes " 1e2", "+5", "1_000" and non-ASCII digits: not money strings.
        raise ValueError("must be a decimal string such as '12.50'")
    return amount


def _money_string(value: Decimal) -> str:
    return str(value.quantize(MONEY_PLACES))


# The schemas say exactly what the validators accept (a decimal string, or a JSON integer) and
# what the serializer writes (always 2 places), so the contract can be fuzzed against the app.
Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    PlainSerializer(_money_string, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,2})?$"},
                {"type": "integer"},
            ],
            "examples": ["12.50"],
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "examples": ["12.50"]},
        mode="serialization",
    ),
]


def _unit_price(value: Decimal) -> Decimal:
    if value < 0 or value.is_signed():  # "-0" too
        raise ValueError("must not be negative")
    if value > MAX_UNIT_PRICE:
        raise ValueError(f"must be at most {MAX_UNIT_PRICE}")
    return value


# 0 to MAX_UNIT_PRICE (1000000.00), leading zeros allowed as the validator allows them.
_UNIT_PRICE_STRING: Final = r"^0*([0-9]{1,6}(\.[0-9]{1,2})?|1000000(\.0{1,2})?)$"
_WHOLE_UNIT_PRICE_STRING: Final = r"^0*([0-9]{1,6}|1000000)(\.0{1,2})?$"

UnitPrice = Annotated[
    Money,
    AfterValidator(_unit_price),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _UNIT_PRICE_STRING},
                {"type": "integer", "minimum": 0, "maximum": int(MAX_UNIT_PRICE)},
            ],
            "examples": ["12.50"],
        },
        mode="validation",
    ),
]


def _currency(value: str) -> str:
    if value not in ISO_4217:
        raise ValueError("must be an ISO 4217 currency code such as 'EUR'")
    return value


Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$", strict=True),
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(ISO_4217), "examples": ["EUR"]}),
]


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    BACKORDERED = "backordered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The lifecycle (docs/ARCHITECTURE.md, Order lifecycle); anything not listed is illegal.
ALLOWED_TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.EXPIRED}),
    OrderStatus.PAID: frozenset({OrderStatus.FULFILLED, OrderStatus.BACKORDERED}),
    OrderStatus.BACKORDERED: frozenset({OrderStatus.CANCELLED}),
    OrderStatus.FULFILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


class OrderSource(StrEnum):
    API = "api"
    IMPORT = "import"


class StrictModel(BaseModel):
    """Input models: unknown fields are errors (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class OrderLine(StrictModel):
    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)
    unit_price: UnitPrice = Field(alias="unitPrice")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


# The zero-decimal rule below, as JSON Schema (2020-12 ``if``/``then``) for the OpenAPI document.
_ZERO_DECIMAL_RULE: Final[dict[str, Any]] = {
    "if": {
        "required": ["currency"],
        "properties": {"currency": {"enum": sorted(ZERO_DECIMAL_CURRENCIES)}},
    },
    "then": {
        "properties": {
            "lines": {
                "items": {
                    "properties": {
                        "unitPrice": {
                            "anyOf": [
                                {"type": "string", "pattern": _WHOLE_UNIT_PRICE_STRING},
                                {"type": "integer"},
                            ]
                        }
                    }
                }
            }
        }
    },
}


class OrderDraft(StrictModel):
    """What a client (or an import row group) asks for: ``POST .../orders`` body."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        json_schema_extra=_ZERO_DECIMAL_RULE,
    )

    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency

    @model_validator(mode="after")
    def _whole_units_for_zero_decimal_currencies(self) -> OrderDraft:
        if self.currency in ZERO_DECIMAL_CURRENCIES:
            for line in self.lines:
                if line.unit_price != line.unit_price.to_integral_value():
                    raise ValueError(f"{self.currency} prices have no decimal places")
        return self

    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0)).quantize(MONEY_PLACES)


class Order(BaseModel):
    """An order as stored and returned (camelCase on the wire and in Cosmos)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    id: str
    customer_id: str = Field(alias="customerId")
    status: OrderStatus
    lines: list[OrderLine]
    currency: str
    total: Money
    source: OrderSource = OrderSource.API
    external_id: str | None = Field(default=None, alias="externalId")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


class StockLevelIn(StrictModel):
    """``PUT /inventory/{sku}`` body."""

    available: int = Field(ge=0, le=1_000_000_000, strict=True)


class StockLevelOut(BaseModel):
    sku: str
    available: int


class ImportState(StrEnum):
    ACCEPTED = "accepted"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class ImportStatus(BaseModel):
    """An import's progress, as ``GET /imports/{importId}`` returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    import_id: str = Field(alias="importId")
    state: ImportState
    rows_read: int = Field(default=0, alias="rowsRead")
    accepted: int = 0
    rejected: int = 0
    chunks_total: int | None = Field(default=None, alias="chunksTotal")
    chunks_done: int = Field(default=0, alias="chunksDone")
    report_location: str | None = Field(default=None, alias="reportLocation")
    reason: str | None = None
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class OrderList(BaseModel):
    """A page of orders, newest first."""

    items: list[Order]
    continuation: str | None
