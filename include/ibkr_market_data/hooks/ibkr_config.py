"""Read the ``ibkr`` connection into a typed, frozen config: the one place its defaults live.

Extras come as JSON (the UI form; an emptied field is ``null``) or URI strings; a missing key,
``null`` or ``""`` means the default, a bad value is an IbkrConfigError naming the extra.
See docs/configuration.md.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Final, TypeVar

from ibkr_market_data.errors import IbkrConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: API clients one TWS / IB Gateway session accepts, each with its own client id.
MAX_API_CLIENTS: Final = 32

T = TypeVar("T")

_TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})


class MarketDataType(enum.IntEnum):
    """IB's ``reqMarketDataType`` values: which market data the connection receives."""

    LIVE = 1
    FROZEN = 2
    DELAYED = 3
    DELAYED_FROZEN = 4


_MARKET_DATA_TYPE_CHOICES: Final = "one of " + ", ".join(
    f"{kind.value} ({kind.name.lower().replace('_', '-')})" for kind in MarketDataType
)


@dataclass(frozen=True)
class IbkrConnectionConfig:
    """How the hook reaches TWS / IB Gateway; each field but ``host`` and ``port`` is an extra.

    The field defaults are the connection's defaults; ``IbkrHook``'s docstring says what each one
    means. Construction checks every value, so an instance is always usable.
    """

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 1
    client_id_range: int = MAX_API_CLIENTS
    readonly: bool = True
    account: str = ""
    market_data_type: MarketDataType = MarketDataType.LIVE
    connect_timeout: float = 10.0
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise IbkrConfigError(f"The ibkr connection's port must be 1..65535, not {self.port}")
        if self.client_id < 0:
            raise _invalid("client_id", self.client_id, "a client id >= 0")
        if not 1 <= self.client_id_range <= MAX_API_CLIENTS:
            raise _invalid(
                "client_id_range",
                self.client_id_range,
                f"1..{MAX_API_CLIENTS} (TWS / IB Gateway accepts {MAX_API_CLIENTS} API clients)",
            )
        try:
            MarketDataType(self.market_data_type)
        except ValueError:
            raise _invalid("market_data_type", self.market_data_type, _MARKET_DATA_TYPE_CHOICES) from None
        for name in ("connect_timeout", "request_timeout"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds > 0):
                raise _invalid(name, seconds, "a number of seconds > 0")

    @classmethod
    def extra_names(cls) -> tuple[str, ...]:
        """Return the extras the connection reads, in the form's order."""
        return tuple(field.name for field in fields(cls) if field.name not in ("host", "port"))

    @classmethod
    def from_connection(cls, conn: Connection) -> IbkrConnectionConfig:
        """Return the config of Airflow connection ``conn``.

        :raises IbkrConfigError: naming an extra that does not parse or is out of range.
        """
        extras = conn.extra_dejson
        default = cls()
        return cls(
            host=conn.host or default.host,
            port=conn.port or default.port,
            client_id=_extra(extras, "client_id", _integer, default.client_id),
            client_id_range=_extra(extras, "client_id_range", _integer, default.client_id_range),
            readonly=_extra(extras, "readonly", _boolean, default.readonly),
            account=_extra(extras, "account", _text, default.account),
            market_data_type=_extra(extras, "market_data_type", _market_data_type, default.market_data_type),
            connect_timeout=_extra(extras, "connect_timeout", _seconds, default.connect_timeout),
            request_timeout=_extra(extras, "request_timeout", _seconds, default.request_timeout),
        )

    @classmethod
    def unknown_extras(cls, extras: Mapping[str, object]) -> list[str]:
        """Return the extras the connection has but the hook does not read (most likely misspelt)."""
        return sorted(set(extras) - set(cls.extra_names()))


def _extra(extras: Mapping[str, object], name: str, parse: Callable[[str, object], T], default: T) -> T:
    """Return extra ``name`` parsed; missing, ``null`` and ``""`` (an emptied form field) mean ``default``."""
    value = extras.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return parse(name, value)


def _invalid(name: str, value: object, wanted: str) -> IbkrConfigError:
    return IbkrConfigError(
        f"The ibkr connection's extra {name} must be {wanted}, not {value!r}; "
        "fix it, or remove it for the default"
    )


def _integer(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _invalid(name, value, "an integer")


def _seconds(name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _invalid(name, value, "a number of seconds > 0")


def _boolean(name: str, value: object) -> bool:
    # Refuse what is not clearly a boolean: a misspelt "ture" must not turn read-only off.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _invalid(name, value, "true or false (or 1/0, yes/no, on/off)")


def _text(name: str, value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    raise _invalid(name, value, "a string")


def _market_data_type(name: str, value: object) -> MarketDataType:
    number = _integer(name, value)
    try:
        return MarketDataType(number)
    except ValueError:
        raise _invalid(name, value, _MARKET_DATA_TYPE_CHOICES) from None
