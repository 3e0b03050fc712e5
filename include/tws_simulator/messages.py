"""Decode the client requests the simulator answers, as sent at server version 176.

Each ``decode_*`` function takes one frame's fields (message id first) and returns a frozen
dataclass, or raises :class:`MalformedRequest`. The layouts: docs/simulator.md#requests-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

_CONTRACT_FIELDS = 12


class MalformedRequest(ValueError):
    """A request's fields do not have the layout of its message id."""


@dataclass(frozen=True)
class ContractQuery:
    """The contract fields of a request, as the client described the instrument."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str = ""


@dataclass(frozen=True)
class HistoricalDataRequest:
    """A reqHistoricalData message (``20``)."""

    req_id: int
    contract: ContractQuery
    end_date_time: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True)
class ContractDetailsRequest:
    """A reqContractDetails message (``9``)."""

    req_id: int
    contract: ContractQuery


@dataclass(frozen=True)
class HeadTimestampRequest:
    """A reqHeadTimeStamp message (``87``)."""

    req_id: int
    contract: ContractQuery
    use_rth: bool
    what_to_show: str
    format_date: int


def _int(text: str, name: str) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        raise MalformedRequest(f"{name} is not an integer: {text!r}") from None


def _bool(text: str) -> bool:
    return text not in ("", "0", "false", "False")


def _contract(fields: list[str], start: int) -> ContractQuery:
    if len(fields) < start + _CONTRACT_FIELDS:
        raise MalformedRequest(f"Contract needs {_CONTRACT_FIELDS} fields from position {start}")
    (
        con_id,
        symbol,
        sec_type,
        _last_trade_date,
        _strike,
        _right,
        _multiplier,
        exchange,
        primary_exchange,
        currency,
        local_symbol,
        _trading_class,
    ) = fields[start : start + _CONTRACT_FIELDS]
    return ContractQuery(
        con_id=_int(con_id, "conId"),
        symbol=symbol,
        sec_type=sec_type,
        exchange=exchange,
        primary_exchange=primary_exchange,
        currency=currency,
        local_symbol=local_symbol,
    )


def request_id(fields: list[str]) -> int | None:
    """Return the reqId of a request whose layout is otherwise broken, so an error can still be addressed."""
    message_id = fields[0] if fields else ""
    position = {"20": 1, "87": 1, "9": 2, "25": 2, "90": 1}.get(message_id)
    if position is None or len(fields) <= position:
        return None
    try:
        return int(fields[position])
    except ValueError:
        return None


def decode_historical_data(fields: list[str]) -> HistoricalDataRequest:
    """Decode reqHistoricalData (``20``)."""
    contract = _contract(fields, 2)
    rest = fields[2 + _CONTRACT_FIELDS :]
    if len(rest) < 8:
        raise MalformedRequest(f"reqHistoricalData has {len(fields)} fields, expected at least 23")
    _include_expired, end_date_time, bar_size, duration, use_rth, what_to_show, format_date = rest[:7]
    after = rest[7:]
    if contract.sec_type == "BAG" and after:
        legs = _int(after[0], "BAG leg count")
        after = after[1 + 4 * legs :]
    return HistoricalDataRequest(
        req_id=_int(fields[1], "reqId"),
        contract=contract,
        end_date_time=end_date_time.strip(),
        bar_size=" ".join(bar_size.split()),
        duration=" ".join(duration.split()),
        use_rth=_bool(use_rth),
        what_to_show=what_to_show.strip().upper(),
        format_date=_int(format_date, "formatDate") or 1,
        keep_up_to_date=_bool(after[0]) if after else False,
    )


def decode_contract_details(fields: list[str]) -> ContractDetailsRequest:
    """Decode reqContractDetails (``9``)."""
    if len(fields) < 3 + _CONTRACT_FIELDS:
        raise MalformedRequest(f"reqContractDetails has {len(fields)} fields, expected 19")
    return ContractDetailsRequest(req_id=_int(fields[2], "reqId"), contract=_contract(fields, 3))


def decode_head_timestamp(fields: list[str]) -> HeadTimestampRequest:
    """Decode reqHeadTimeStamp (``87``)."""
    contract = _contract(fields, 2)
    rest = fields[2 + _CONTRACT_FIELDS :]
    if len(rest) < 4:
        raise MalformedRequest(f"reqHeadTimeStamp has {len(fields)} fields, expected 18")
    _include_expired, use_rth, what_to_show, format_date = rest[:4]
    return HeadTimestampRequest(
        req_id=_int(fields[1], "reqId"),
        contract=contract,
        use_rth=_bool(use_rth),
        what_to_show=what_to_show.strip().upper(),
        format_date=_int(format_date, "formatDate") or 1,
    )


def decode_cancel_historical_data(fields: list[str]) -> int:
    """Return the reqId a cancelHistoricalData message (``25``) cancels."""
    if len(fields) < 3:
        raise MalformedRequest("cancelHistoricalData needs version and reqId")
    return _int(fields[2], "reqId")


def decode_cancel_head_timestamp(fields: list[str]) -> int:
    """Return the reqId a cancelHeadTimeStamp message (``90``) cancels."""
    if len(fields) < 2:
        raise MalformedRequest("cancelHeadTimeStamp needs a reqId")
    return _int(fields[1], "reqId")


def decode_start_api(fields: list[str]) -> int:
    """Return the client id of a startApi message (``71``)."""
    if len(fields) < 3:
        raise MalformedRequest("startApi needs version and clientId")
    return _int(fields[2], "clientId")
