"""Corporate actions, identity changes and inactive symbols in ``make report`` and on the dashboard."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from ibkr_market_data import cli
from ibkr_market_data.dashboard.app import create_app


@pytest.fixture
def changed_symbols(db_conn: psycopg.Connection) -> None:
    """AAPL split 4:1 and changed conId on 2025-06-16, MSFT delisted after 2025-06-13, OLD removed."""
    db_conn.execute(
        """
        INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, con_id, active,
                             inactive_reason, inactive_since, last_session)
        VALUES (1, 'AAPL', 'SMART', 'NASDAQ', 'USD', 987654321, TRUE, NULL, NULL, NULL),
               (2, 'MSFT', 'SMART', 'NASDAQ', 'USD', 200002, FALSE,
                'delisted: IB has no security definition for it as of 2025-06-16; last session 2025-06-13',
                '2025-06-16 22:05+00', '2025-06-13'),
               (3, 'OLD', 'SMART', 'NASDAQ', 'USD', 200003, FALSE, 'removed from the universe files',
                '2025-03-02 08:00+00', NULL)
        """
    )
    db_conn.execute(
        """
        INSERT INTO market_data (symbol_id, timeframe, timestamp, open, high, low, close)
        SELECT 2, '1day', day, 10, 11, 9, 10
        FROM generate_series(TIMESTAMP '2025-06-09', TIMESTAMP '2025-06-13', interval '1 day') day
        """
    )
    db_conn.execute(
        """
        INSERT INTO symbol_identities (symbol_id, con_id, valid_from, valid_to)
        VALUES (1, 200001, NULL, '2025-06-15'), (1, 987654321, '2025-06-16', NULL),
               (2, 200002, NULL, '2025-06-13')
        """
    )
    rows = [
        (1, "split", dt.date(2025, 6, 16), 4, "lookback", {"rebase": "done", "refetched": {
            "1day": {"requests": 2, "revised": 255}, "5min": {"requests": 1, "revised": 390}}}),
        (1, "con_id_change", dt.date(2025, 6, 16), None, "daily run",
         {"old_con_id": 200001, "new_con_id": 987654321}),
        (2, "delisting", dt.date(2025, 6, 16), None, "daily run", {"last_session": "2025-06-13"}),
        (2, "split", dt.date(2024, 1, 2), 2, "lookback", {"rebase": "done"}),  # outside the range
    ]  # fmt: skip
    for symbol_id, kind, effective, ratio, detected_by, details in rows:
        db_conn.execute(
            "INSERT INTO corporate_actions (symbol_id, kind, effective_session, ratio, detected_by, details)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (symbol_id, kind, effective, ratio, detected_by, Jsonb(details)),
        )
    db_conn.commit()


def test_the_report_shows_the_ranges_corporate_actions_identity_changes_and_inactive_symbols(
    changed_symbols, capsys
):
    assert cli.main(["report", "--from", "2025-06-02", "--to", "2025-06-20"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Corporate actions effective") : out.index("Runs started")]
    assert section.splitlines() == [
        "Corporate actions effective in the range: 3",
        "  2025-06-16  AAPL     conId 200001 -> 987654321 (found by daily run)",
        "  2025-06-16  AAPL     split 4:1, history fetched again (3 requests, 645 bars revised) "
        "(found by lookback)",
        "  2025-06-16  MSFT     delisting, last session 2025-06-13 (found by daily run)",
        "",
        "Identity changes in the range: 1",
        "  AAPL     conId 200001 -> 987654321 from 2025-06-16",
        "",
        "Inactive symbols: 2; 1 became inactive in the range",
        "  MSFT     NASDAQ  since 2025-06-16: delisted: IB has no security definition for it as of "
        "2025-06-16; last session 2025-06-13; 5 daily bars kept",
        "",
    ]


@pytest.fixture
def client(market_db: str) -> Iterator[TestClient]:
    app = create_app(connect=lambda: psycopg.connect(market_db), require_auth=False)
    with TestClient(app, root_path="/market-data") as test_client:
        yield test_client


def test_the_dashboard_lists_corporate_actions_identities_and_inactive_symbols(changed_symbols, client):
    query = {"from": "2025-06-02", "to": "2025-06-20"}
    data = client.get("/api/corporate-actions", params=query).json()
    assert [(row["symbol"], row["kind"], row["effective_session"]) for row in data["corporate_actions"]] == [
        ("AAPL", "con_id_change", "2025-06-16"),
        ("AAPL", "split", "2025-06-16"),
        ("MSFT", "delisting", "2025-06-16"),
    ]
    assert [
        (row["symbol"], row["con_id"], row["valid_from"], row["valid_to"]) for row in data["identities"]
    ] == [
        ("AAPL", 200001, None, "2025-06-15"),
        ("AAPL", 987654321, "2025-06-16", None),
    ]
    assert [(row["symbol"], row["last_session"], row["daily_bars"]) for row in data["inactive_symbols"]] == [
        ("MSFT", "2025-06-13", 5),
        ("OLD", None, 0),
    ]

    page = client.get("/corporate-actions", params=query)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert text.count("data-kind='") == 3
    assert "split 4:1, history fetched again (3 requests, 645 bars revised)" in text
    assert "removed from the universe files" in text and "id='identities'" in text
    assert "href='/market-data/corporate-actions'" in client.get("/").text  # reachable from the overview
    assert (
        client.get("/corporate-actions", params={"from": "2025-06-20", "to": "2025-06-02"}).status_code == 400
    )
