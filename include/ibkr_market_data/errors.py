"""The project's exceptions: one per IB failure class (from IB's error codes), bad input, config and data.

The client returns an empty list for a failed request, as for "no data", so the hook reads IB's
error code and raises one of these: ``retryable`` ones retry with backoff. See docs/daily-dag.md.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ibkr_market_data.attempt import SymbolOutcome
    from ibkr_market_data.bars import Bar


class IbErrorCode(enum.IntEnum):
    """The IB message codes that decide a failure's class (IB's "Message Codes" table)."""

    MAX_MESSAGE_RATE_EXCEEDED = 100
    #: Historical Market Data Service error: no data, pacing, cancelled, permissions, by its text.
    HISTORICAL_DATA_SERVICE_ERROR = 162
    #: Historical Market Data Service query message, e.g. the service reconnecting.
    HISTORICAL_DATA_SERVICE_QUERY = 165
    HISTORICAL_DATA_EXPIRED_CONTRACT = 166
    #: No security definition found, or the description is ambiguous, by its text.
    NO_SECURITY_DEFINITION = 200
    REQUEST_VALIDATION_ERROR = 321
    #: Error processing request, among them "Only 50 simultaneous API historical data requests".
    REQUEST_PROCESSING_ERROR = 322
    CLIENT_ID_IN_USE = 326
    MARKET_DATA_NOT_SUBSCRIBED = 354
    COULD_NOT_CONNECT = 502
    NOT_CONNECTED = 504
    CONNECTIVITY_LOST = 1100
    #: Connectivity restored, data lost: requests open across the outage must be sent again.
    CONNECTIVITY_RESTORED_DATA_LOST = 1101
    #: Connectivity restored, data kept: open requests go on.
    CONNECTIVITY_RESTORED = 1102
    SOCKET_PORT_RESET = 1300
    #: A market data farm connection is broken (2103), inactive but available (2107).
    MARKET_DATA_FARM_BROKEN = 2103
    HISTORICAL_DATA_FARM_BROKEN = 2105
    #: The historical data farm is connected (again): historical requests are answered.
    HISTORICAL_DATA_FARM_OK = 2106
    SECURITY_DEFINITION_FARM_BROKEN = 2157
    DELAYED_MARKET_DATA_NOT_ENABLED = 10168
    NO_DATA_DURING_COMPETING_SESSION = 10197


class IbkrError(Exception):
    """Base class. ``code`` is IB's error code when IB sent one."""

    retryable: bool = False
    #: What an operator should do, appended to the message.
    advice: str = ""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = None if code is None else int(code)  # a plain int in logs, XCom and the database
        self.reason = message
        text = f"IB error {code}: {message}" if code is not None else message
        super().__init__(f"{text}. {self.advice}" if self.advice else text)


class IbkrNoDataError(IbkrError):
    """IB has no bars for the request (holiday, before listing, no trades). Final, not a failure."""

    advice = "Nothing to collect; the session is recorded as no_data."


class IbkrPacingError(IbkrError):
    """IB refused the request for pacing (162 pacing violation, 322 too many open requests)."""

    retryable = True
    advice = "Retrying after a back-off; lower the ibkr pool's slots if this recurs."


class IbkrPermissionError(IbkrError):
    """The account lacks the market-data subscription (354, 10168, 162 no permissions)."""

    advice = (
        "Subscribe the account to this market's data in IBKR Account Management, or deactivate the symbol."
    )


class IbkrContractError(IbkrError):
    """IB has no single contract for the description (200)."""

    advice = "Fix the symbol's exchange, currency or conId in the symbols table."


class IbkrUnknownContractError(IbkrContractError):
    """No security definition found (200)."""


class IbkrAmbiguousContractError(IbkrContractError):
    """The description matches several contracts (200); give primary exchange or conId."""


class IbkrRequestError(IbkrError):
    """IB rejected the request as malformed or expired (321, 166, other codes)."""

    advice = "Check the request parameters; this will not succeed on retry."


class IbkrConnectionError(IbkrError):
    """The socket to TWS / IB Gateway failed or dropped (502, 504, 1100, disconnect)."""

    retryable = True
    advice = "Check that TWS / IB Gateway is running and reachable; retrying."


class IbkrTimeoutError(IbkrError):
    """IB did not answer in time; the request was cancelled."""

    retryable = True
    advice = "Retrying; raise the connection's request_timeout if the gateway is slow."


class IbkrClientIdInUseError(IbkrConnectionError):
    """Every client id tried was already in use (326)."""

    advice = "Widen the connection's client_id range or stop the other API clients."


class IbkrCompetingSessionError(IbkrError):
    """No market data while the same user has a live session elsewhere (10197): passes when it ends."""

    retryable = True
    advice = (
        "Another TWS / IB Gateway session of this IBKR user takes the market data; log it out "
        "(or give the collector its own user). Retrying."
    )


class IbkrServiceError(IbkrError):
    """IB's historical data service failed in a way it does not name (an unrecognised 162, a farm outage)."""

    retryable = True
    advice = "IB's data service answered with an error it does not explain; retrying with back-off."


class IbkrCancelledError(IbkrError):
    """IB reports the query cancelled (162 'query cancelled'): our own cancel or a timeout."""

    retryable = True


#: Codes that end a request for good, by failure class.
_PERMISSION_CODES = {
    IbErrorCode.MARKET_DATA_NOT_SUBSCRIBED,
    IbErrorCode.DELAYED_MARKET_DATA_NOT_ENABLED,
}
_CONNECTION_CODES = {
    IbErrorCode.COULD_NOT_CONNECT,
    IbErrorCode.NOT_CONNECTED,
    IbErrorCode.CONNECTIVITY_LOST,
    IbErrorCode.CONNECTIVITY_RESTORED_DATA_LOST,
    IbErrorCode.SOCKET_PORT_RESET,
    IbErrorCode.HISTORICAL_DATA_SERVICE_QUERY,
}
_FARM_BROKEN_CODES = {
    IbErrorCode.MARKET_DATA_FARM_BROKEN,
    IbErrorCode.HISTORICAL_DATA_FARM_BROKEN,
    IbErrorCode.SECURITY_DEFINITION_FARM_BROKEN,
}
#: Notices, never a request's failure: connectivity restored with data kept (1102), data farms
#: connected (2104, 2106, 2158), inactive but available on demand (2107, 2108).
INFORMATIONAL_CODES = frozenset({1102, 2104, 2106, 2107, 2108, 2158})


def is_informational(code: int) -> bool:
    """Check whether IB's message ``code`` is a notice that fails nothing."""
    return code in INFORMATIONAL_CODES


_PACING_CODES = {IbErrorCode.REQUEST_PROCESSING_ERROR, IbErrorCode.MAX_MESSAGE_RATE_EXCEEDED}


def classify_error(code: int, message: str) -> IbkrError:
    """Return the exception for IB error ``code`` with text ``message``."""
    text = message.lower()
    if code == IbErrorCode.HISTORICAL_DATA_SERVICE_ERROR:
        if "pacing violation" in text:
            return IbkrPacingError(message, code)
        if "returned no data" in text:
            return IbkrNoDataError(message, code)
        if "cancelled" in text:
            return IbkrCancelledError(message, code)
        if "permission" in text:
            return IbkrPermissionError(message, code)
        # Any other text (a farm outage, a server-side hiccup) passes in practice: retry, bounded.
        return IbkrServiceError(message, code)
    if code == IbErrorCode.NO_SECURITY_DEFINITION:
        if "ambiguous" in text:
            return IbkrAmbiguousContractError(message, code)
        return IbkrUnknownContractError(message, code)
    if code == IbErrorCode.CLIENT_ID_IN_USE:
        return IbkrClientIdInUseError(message, code)
    if code in _PACING_CODES:
        return IbkrPacingError(message, code)
    if code == IbErrorCode.NO_DATA_DURING_COMPETING_SESSION:
        return IbkrCompetingSessionError(message, code)
    if code in _FARM_BROKEN_CODES:
        return IbkrServiceError(message, code)
    if code in _PERMISSION_CODES:
        return IbkrPermissionError(message, code)
    if code in _CONNECTION_CODES:
        return IbkrConnectionError(message, code)
    # 321 request validation, 166 expired contract and every code not named above.
    return IbkrRequestError(message, code)


# Bad input: a value from a person (a param, a command-line value), named in the message.


class InvalidRunParamError(ValueError):
    """A run parameter is unusable; the message names the param and what is expected."""


class BadInputError(ValueError):
    """A command-line value is unusable; the message names it. Ends the command with exit 2."""


class MissingConnectionError(BadInputError):
    """An Airflow connection a command needs is defined nowhere Airflow looks; the message names it."""


class InvalidUniverseError(BadInputError):
    """A universe file (or its row) is unusable; the message names ``file:line`` and the column."""


class InvalidRangeError(ValueError):
    """A date range is unusable; the message says which bound and what is expected."""


class UnknownTimeframeError(ValueError):
    """A timeframe name we do not collect; the message lists the known ones."""


class UnknownExchangeError(ValueError):
    """The exchange has no trading calendar here; add it to ``CALENDAR_CODES``."""


class UnknownCorporateActionKindError(ValueError):
    """A corporate-action kind not known here (a file of known actions, ``IBKR_ADJUST_FOR``), named."""


# Bad configuration: a connection extra or an environment variable, named in the message.


class IbkrConfigError(ValueError):
    """An ``ibkr`` connection field or extra that does not parse or is out of range."""


class GroupingConfigError(ValueError):
    """``IBKR_MAX_MAPPED_TASKS`` is not a usable number; the message names it."""


class InvalidQualitySettingError(ValueError):
    """A malformed ``IBKR_QUALITY_SEVERITIES``; the message names the bad entry."""


# Bad data from IB.


class InvalidBarError(ValueError):
    """A bar from IB that cannot be stored."""


class BrokenBarsError(InvalidBarError):
    """Some bars of a response cannot be stored; ``valid`` holds the others, which can."""

    def __init__(self, broken: Sequence[str], valid: list[Bar]) -> None:
        super().__init__(f"{len(broken)} broken bars not stored: " + "; ".join(broken[:5]))
        self.broken = list(broken)
        self.valid = valid


# Failures of a run.


class PermanentError(Exception):
    """A failure that a retry cannot mend; the DAGs' retry policy fails the task at once."""


class CollectionError(Exception):
    """The symbol failed; ``retryable`` says whether another try may succeed."""

    def __init__(self, outcome: SymbolOutcome, retryable: bool) -> None:
        super().__init__(f"{outcome.symbol}: {outcome.reason}")
        self.outcome = outcome
        self.retryable = retryable


class SymbolsNotLoadedError(RuntimeError):
    """No symbol was ever loaded and IB cannot be reached to load them: the task retries."""


class PlanNotFoundError(LookupError):
    """The group a task was handed is not in ``planned_groups`` (its plan was replaced or expired)."""


class ClientIdsExhaustedError(RuntimeError):
    """Every id of the range is leased."""


class AlertDeliveryError(RuntimeError):
    """A configured channel refused the alert; the message names the channel and the cause."""


class ReadRequestError(ValueError):
    """A read or an export asked for something unusable: an unknown symbol or timeframe, a bad range.

    The message names the input and what is expected (``ibkr_market_data.reader``, docs/reading-data.md).
    """
