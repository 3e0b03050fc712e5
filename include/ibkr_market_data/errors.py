"""One exception type per IB failure class, read from IB's error codes and texts.

``ib_insync`` returns an empty list for a failed historical request, indistinguishable from "no
data". The hook reads the code from ``errorEvent`` instead and raises one of these, so the task can
decide: ``retryable`` failures retry with backoff, the others fail the symbol at once.
"""

from __future__ import annotations


class IbkrError(Exception):
    """Base class. ``code`` is IB's error code when IB sent one."""

    retryable: bool = False
    #: What an operator should do, appended to the message.
    advice: str = ""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        self.reason = message
        text = f"IB error {code}: {message}" if code is not None else message
        super().__init__(f"{text}. {self.advice}" if self.advice else text)


class IbkrNoDataError(IbkrError):
    """IB has no bars for the request (holiday, before listing, no trades). Final, not a failure."""

    advice = "Nothing to collect; the session is recorded as no_data."


class IbkrPacingViolation(IbkrError):
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


class IbkrCancelledError(IbkrError):
    """IB reports the query cancelled (162 'query cancelled'): our own cancel or a timeout."""

    retryable = True


#: Codes that end a request for good, by failure class.
_PERMISSION_CODES = {354, 10168, 10197}
_REQUEST_CODES = {321, 166}
_CONNECTION_CODES = {502, 504, 1100, 1300}
_PACING_CODES = {322, 100}


def classify_error(code: int, message: str) -> IbkrError:
    """The exception for IB error ``code`` with text ``message``."""
    text = message.lower()
    if code == 162:
        if "pacing violation" in text:
            return IbkrPacingViolation(message, code)
        if "returned no data" in text:
            return IbkrNoDataError(message, code)
        if "cancelled" in text:
            return IbkrCancelledError(message, code)
        if "permission" in text:
            return IbkrPermissionError(message, code)
        return IbkrRequestError(message, code)
    if code == 200:
        if "ambiguous" in text:
            return IbkrAmbiguousContractError(message, code)
        return IbkrUnknownContractError(message, code)
    if code == 326:
        return IbkrClientIdInUseError(message, code)
    if code in _PACING_CODES:
        return IbkrPacingViolation(message, code)
    if code in _PERMISSION_CODES:
        return IbkrPermissionError(message, code)
    if code in _CONNECTION_CODES:
        return IbkrConnectionError(message, code)
    if code == 165:
        return IbkrConnectionError(message, code)
    return IbkrRequestError(message, code)
