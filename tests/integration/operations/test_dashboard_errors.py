"""The dashboard's 503 and 500 answers carry an error id, never the exception's text; the log has both."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from ibkr_market_data.dashboard.app import create_app

#: A password-like string planted where an exception's text would carry it to the client.
PLANTED = "Hunter2-planted-secret"


@pytest.mark.parametrize("case", ["unavailable", "unexpected"])
def test_error_bodies_carry_an_id_and_never_the_exception_text(week, market_db, monkeypatch, caplog, case):
    if case == "unavailable":
        # The server names the missing database in its error, as it would a host or a mistyped URI.
        server = market_db.rsplit("/", 1)[0].replace(
            "postgresql://postgres@", f"postgresql://postgres:{PLANTED}@"
        )
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", f"{server}/missing_{PLANTED}")
        expected = 503
    else:

        def broken(*args: object) -> None:
            raise RuntimeError(f"column missing near password={PLANTED}")

        monkeypatch.setattr("ibkr_market_data.repository.latest_runs", broken)
        expected = 500
    app = create_app(require_auth=False)
    caplog.set_level(logging.INFO, logger="ibkr_market_data.dashboard.app")
    with TestClient(app, root_path="/market-data", raise_server_exceptions=False) as client:
        for path in ("/api/runs", "/"):
            response = client.get(path)
            assert response.status_code == expected, response.text
            assert PLANTED not in response.text
            assert not re.search(r"[A-Za-z]+(Error|Exception)", response.text), response.text
            error_id = re.search(r"\(error ([0-9a-f]{12})\)", response.text).group(1)
            logged = [record for record in caplog.records if error_id in record.getMessage()]
            assert logged, f"error {error_id} is not in the log"
            assert PLANTED in logged[0].getMessage() + str(logged[0].exc_info)
