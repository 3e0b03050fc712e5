"""IB's error codes and messages classified into the project's exceptions, retryable or not."""

import pytest

from ibkr_market_data import errors


@pytest.mark.parametrize(
    ("code", "text", "expected", "retryable"),
    [
        (
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
            errors.IbkrNoDataError,
            False,
        ),
        (
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
            errors.IbkrPacingError,
            True,
        ),
        (
            162,
            "Historical Market Data Service error message:API historical data query cancelled: 7",
            errors.IbkrCancelledError,
            True,
        ),
        (
            162,
            "Historical Market Data Service error message:No market data permissions for ASX STK",
            errors.IbkrPermissionError,
            False,
        ),
        (
            200,
            "No security definition has been found for the request",
            errors.IbkrUnknownContractError,
            False,
        ),
        (
            200,
            "The contract description specified for BHP is ambiguous.",
            errors.IbkrAmbiguousContractError,
            False,
        ),
        (354, "Requested market data is not subscribed.", errors.IbkrPermissionError, False),
        (322, "Only 50 simultaneous API historical data requests allowed.", errors.IbkrPacingError, True),
        (321, "Error validating request", errors.IbkrRequestError, False),
        (326, "Unable to connect as the client id is already in use.", errors.IbkrClientIdInUseError, True),
        (504, "Not connected", errors.IbkrConnectionError, True),
        (
            1100,
            "Connectivity between IB and Trader Workstation has been lost.",
            errors.IbkrConnectionError,
            True,
        ),
        (
            165,
            "Historical Market Data Service query message:HMDS server disconnect",
            errors.IbkrConnectionError,
            True,
        ),
        (166, "HMDS Expired Contract Violation", errors.IbkrRequestError, False),
        (100, "Max rate of messages per second has been exceeded", errors.IbkrPacingError, True),
        (
            10168,
            "Requested market data is not subscribed. Delayed market data is not enabled.",
            errors.IbkrPermissionError,
            False,
        ),
        (10197, "No market data during competing live session", errors.IbkrCompetingSessionError, True),
        (
            162,
            "Historical Market Data Service error message:HMDS server connection was broken",
            errors.IbkrServiceError,
            True,
        ),
        (
            1101,
            "Connectivity between IB and TWS has been restored- data lost.",
            errors.IbkrConnectionError,
            True,
        ),
        (2105, "HMDS data farm connection is broken:ushmds", errors.IbkrServiceError, True),
        (2103, "Market data farm connection is broken:usfarm", errors.IbkrServiceError, True),
        (
            420,
            "Invalid real-time query: an unnamed code is a request error",
            errors.IbkrRequestError,
            False,
        ),
    ],
)
def test_error_classification(code, text, expected, retryable):
    error = errors.classify_error(code, text)
    assert type(error) is expected
    assert error.code == code
    assert type(error.code) is int
    assert error.retryable is retryable
    assert str(code) in str(error)


def test_connectivity_restored_and_farm_ok_notices_fail_nothing():
    for code in (1102, 2104, 2106, 2107, 2108, 2158):
        assert errors.is_informational(code)
    for code in (162, 1100, 1101, 2103, 2105, 10197):
        assert not errors.is_informational(code)


def test_named_codes_are_ibs_numbers():
    assert errors.IbErrorCode.CLIENT_ID_IN_USE == 326
    assert errors.IbErrorCode.NO_SECURITY_DEFINITION == 200
    assert errors.IbErrorCode.HISTORICAL_DATA_SERVICE_ERROR == 162
    assert errors.IbErrorCode.REQUEST_PROCESSING_ERROR == 322


def test_an_error_made_with_a_named_code_carries_a_plain_int():
    error = errors.IbkrUnknownContractError(
        "No security definition", errors.IbErrorCode.NO_SECURITY_DEFINITION
    )
    assert type(error.code) is int
    assert str(error).startswith("IB error 200: No security definition")
