"""Name one IB contract unambiguously, independent of the client library.

See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ibkr_market_data.ib_client import Contract


@dataclass(frozen=True)
class ContractSpec:
    """A stock or ETF as IB knows it. With ``con_id`` set, IB needs nothing else to find it."""

    symbol: str
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    sec_type: str = "STK"
    con_id: int = 0

    def to_ib(self) -> Contract:
        """Return the IB client library's ``Contract`` for this spec."""
        from ibkr_market_data.ib_client import Contract

        return Contract(
            secType=self.sec_type,
            conId=self.con_id or 0,
            symbol=self.symbol,
            exchange=self.exchange,
            primaryExchange=self.primary_exchange,
            currency=self.currency,
        )

    def __str__(self) -> str:
        where = self.primary_exchange or self.exchange
        return f"{self.symbol}@{where}/{self.currency}" + (f" (conId {self.con_id})" if self.con_id else "")


@dataclass(frozen=True)
class ResolvedContract:
    """IB's answer to a contract-details request."""

    con_id: int
    symbol: str
    primary_exchange: str
    currency: str
    time_zone: str
    long_name: str
