"""IB's error codes and texts, as the simulator sends them in message ``4``.

The wording follows IB's public "TWS API Message Codes" documentation
(https://interactivebrokers.github.io/tws-api/message_codes.html). See docs/simulator.md#ibs-rules.
"""

from __future__ import annotations

from dataclasses import dataclass

#: reqId of a notice that belongs to no request.
NO_REQUEST = -1


@dataclass(frozen=True)
class IbError:
    """One error message: ``code`` and ``message`` exactly as sent."""

    code: int
    message: str


def no_data(symbol: str, exchange: str, what_to_show: str) -> IbError:
    """Return 162: no bar of ``symbol`` in the window, as HMDS words it."""
    label = what_to_show.replace("_", " ").title().replace(" ", "_")
    return IbError(
        162,
        "Historical Market Data Service error message:"
        f"HMDS query returned no data: {symbol}@{exchange} {label}",
    )


def hmds_farm_broken() -> IbError:
    """Return the error of a historical request that falls due while the HMDS farm is down."""
    return IbError(
        162, "Historical Market Data Service error message:HMDS data farm connection is broken:ushmds"
    )


def pacing_violation() -> IbError:
    """Return 162: a historical request broke IB's pacing rules."""
    return IbError(
        162, "Historical Market Data Service error message:Historical data request pacing violation"
    )


def query_cancelled(req_id: int) -> IbError:
    """Return 162: the open historical request ``req_id`` was cancelled."""
    return IbError(162, f"API historical data query cancelled: {req_id}")


def time_length_exceeded() -> IbError:
    """Return 162: the request spans longer than IB allows for its bar size."""
    return IbError(162, "Historical Market Data Service error message:Time length exceed max.")


def no_security_definition() -> IbError:
    """Return 200: no contract matches the request."""
    return IbError(200, "No security definition has been found for the request")


def ambiguous_contract(symbol: str) -> IbError:
    """Return 200: several contracts match the request for ``symbol``."""
    return IbError(200, f"The contract description specified for {symbol} is ambiguous.")


def validation_failed(cause: str) -> IbError:
    """Return 321: the request failed validation, for ``cause``."""
    return IbError(321, f"Error validating request:-'bP' : cause - {cause}")


def too_many_open_requests(limit: int) -> IbError:
    """Return 322: ``limit`` historical requests are already open."""
    return IbError(
        322,
        "Error processing request:-'bP' : cause - "
        f"Only {limit} simultaneous API historical data requests allowed.",
    )


def client_id_in_use() -> IbError:
    """Return 326: another connection holds the client id."""
    return IbError(
        326, "Unable to connect as the client id is already in use. Retry with a unique client id."
    )


def not_subscribed() -> IbError:
    """Return 354: the account has no market-data subscription for the contract."""
    return IbError(354, "Requested market data is not subscribed.")


def no_query_found(req_id: int) -> IbError:
    """Return 366: there is no open historical request ``req_id`` to cancel."""
    return IbError(366, f"No historical data query found for ticker id:{req_id}")


def too_many_clients(limit: int) -> IbError:
    """Return 502 for a client beyond ``limit`` (IB documents no code of its own)."""
    return IbError(502, f"Couldn't connect to TWS: the maximum of {limit} API clients is already connected.")


# -- notices that belong to no request (reqId -1) ---------------------------------------------------


def connectivity_lost() -> IbError:
    """Return 1100: IB's link to TWS is lost."""
    return IbError(1100, "Connectivity between IB and Trader Workstation has been lost.")


def connectivity_restored(data_lost: bool) -> IbError:
    """Return 1101 (open requests lost) or 1102 (kept): IB's link is back."""
    if data_lost:
        return IbError(1101, "Connectivity between IB and TWS has been restored- data lost.")
    return IbError(1102, "Connectivity between IB and TWS has been restored- data maintained.")


HMDS_FARM_BROKEN = IbError(2105, "HMDS data farm connection is broken:ushmds")
HMDS_FARM_OK = IbError(2106, "HMDS data farm connection is OK:ushmds")

#: What IB Gateway tells every client right after it connects: each data farm it uses is up.
CONNECT_NOTICES = (
    IbError(2104, "Market data farm connection is OK:usfarm"),
    HMDS_FARM_OK,
    IbError(2158, "Sec-def data farm connection is OK:secdefnj"),
)

#: A data-farm flap as IB Gateway reports it: each farm broken, then OK again or idle.
FARM_NOTICES = (
    IbError(2103, "Market data farm connection is broken:usfarm"),
    IbError(2105, "HMDS data farm connection is broken:ushmds"),
    IbError(2157, "Sec-def data farm connection is broken:secdefil"),
    IbError(2104, "Market data farm connection is OK:usfarm"),
    IbError(2106, "HMDS data farm connection is OK:ushmds"),
    IbError(2158, "Sec-def data farm connection is OK:secdefil"),
    IbError(2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds"),
)
