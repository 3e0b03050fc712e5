"""The market-data dashboard: a FastAPI app that Airflow's API server mounts at ``/market-data``.

Each page has its JSON beside it under ``/api``. Every route needs permission to read the market-data
DAGs' runs; database work is bounded (``limits``). See docs/operations.md#the-dashboard.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ibkr_market_data import coverage, repository
from ibkr_market_data.dashboard import charts, pages
from ibkr_market_data.dashboard.limits import RETRY_AFTER_SECONDS, DashboardLimits, RequestGate
from ibkr_market_data.errors import InvalidRangeError, InvalidRunParamError
from ibkr_market_data.run_dates import parse_date_param
from ibkr_market_data.settings import MARKET_DATA_CONN_ID, MARKET_DATA_DAG_IDS

if TYPE_CHECKING:
    from fastapi.params import Depends as DependsParam

log = logging.getLogger(__name__)

#: Where Airflow mounts the app (the plugin's ``url_prefix``).
URL_PREFIX = "/market-data"
#: Calendar days of bars the symbol page charts when no range is given (up to its latest bar).
SYMBOL_DEFAULT_DAYS = 180

Connect = Callable[[], Any]
T = TypeVar("T")

FromParam = Annotated[str | None, Query(alias="from", description="First trading date, YYYY-MM-DD")]
ToParam = Annotated[str | None, Query(alias="to", description="Last trading date, YYYY-MM-DD")]
LimitParam = Annotated[int, Query(ge=1, le=1000, description="Rows at most")]


def market_data_access() -> list[DependsParam]:
    """Return the dependencies that admit only a user allowed to read the runs of every market-data DAG.

    Airflow's own check, through the configured auth manager: 401 without a user, 403 without the permission.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return [
        Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id))
        for dag_id in MARKET_DATA_DAG_IDS
    ]


def error_id() -> str:
    """Return a short id that ties an error answered to a client to its line in the API server's log."""
    return uuid.uuid4().hex[:12]


def parse_day(value: str | None, name: str) -> dt.date | None:
    """Return the date of query parameter ``name``; None when it is not given.

    :raises HTTPException: 400 naming the parameter, for a malformed date.
    """
    try:
        return parse_date_param(value, name)
    except InvalidRunParamError as exc:
        raise HTTPException(status_code=400, detail=str(exc).replace("Param", "Query parameter")) from None


def create_app(
    connect: Connect | None = None, require_auth: bool = True, limits: DashboardLimits | None = None
) -> FastAPI:
    """Build the dashboard app.

    :param connect: opens a market-data connection per request; default: ``market_data_db`` with the
        dashboard's timeouts.
    :param require_auth: check the Airflow permission on every route (off only in tests of the pages).
    :param limits: timeouts and concurrency; default: from the ``IBKR_DASHBOARD_*`` variables.
    """
    limits = limits or DashboardLimits.from_env()
    if connect is None:

        def connect() -> psycopg.Connection:
            from ibkr_market_data.dashboard.database import open_dashboard_connection

            return open_dashboard_connection(limits)

    open_connection: Connect = connect
    gate = RequestGate(limits.max_requests)
    app = FastAPI(
        title="Market data",
        description="Coverage, freshness, runs, failures and metrics of the IBKR market-data collection.",
        dependencies=market_data_access() if require_auth else [],
        # FastAPI serves these outside the app's dependencies: they are routes below, behind the check.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def unavailable(exc: Exception) -> HTTPException:
        ref = error_id()
        log.warning("Market-data database unavailable (error %s): %s: %s", ref, type(exc).__name__, exc)
        return HTTPException(
            status_code=503,
            detail=f"The market-data database did not answer (error {ref}); check the {MARKET_DATA_CONN_ID} "
            "connection. The API server's log has the details.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    def with_database(work: Callable[[psycopg.Connection], T]) -> T:
        try:
            conn = open_connection()
        except Exception as exc:  # a missing connection or an unreachable server: a 503, not a 500
            raise unavailable(exc) from None
        try:
            return work(conn)
        except psycopg.OperationalError as exc:  # a statement or lock timeout, a dropped connection
            raise unavailable(exc) from None
        finally:
            conn.close()

    async def read(work: Callable[[psycopg.Connection], T]) -> T:
        """Return ``work(conn)`` on a market-data connection, under the gate's cap and timeouts."""
        return await gate.run(lambda: with_database(work))

    def today() -> dt.date:
        return dt.datetime.now(dt.UTC).date()

    def date_range(
        conn: psycopg.Connection, start_text: str | None, end_text: str | None
    ) -> tuple[dt.date, dt.date]:
        start, end = parse_day(start_text, "from"), parse_day(end_text, "to")
        end = end or today()
        if start is None:
            exchanges = coverage.known_exchanges(row[0] for row in repository.active_symbol_counts(conn))
            start = coverage.default_range(exchanges or ["NYSE"], end)[0]
        try:
            coverage.check_report_range(start, end)
        except InvalidRangeError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return start, end

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    # -- JSON -----------------------------------------------------------------------------

    @app.get("/api/coverage")
    async def coverage_json(start: FromParam = None, end: ToParam = None) -> JSONResponse:
        """One row per (trading date, listing exchange): expected, stored, failed, no_data."""

        def work(conn: psycopg.Connection) -> JSONResponse:
            first, last = date_range(conn, start, end)
            rows = coverage.coverage(conn, first, last)
            return JSONResponse(
                {"from": first.isoformat(), "to": last.isoformat(), "rows": [row.as_json() for row in rows]}
            )

        return await read(work)

    @app.get("/api/freshness")
    async def freshness_json() -> JSONResponse:
        delay = coverage.freshness_delay()

        def work(conn: psycopg.Connection) -> JSONResponse:
            rows = coverage.freshness(conn, dt.datetime.now(dt.UTC), delay)
            return JSONResponse(
                {
                    "delay_minutes": delay.total_seconds() / 60,
                    "symbols_loaded": repository.has_resolved_symbols(conn),
                    "exchanges": [row.as_json() for row in rows],
                }
            )

        return await read(work)

    @app.get("/api/runs")
    async def runs_json(limit: LimitParam = 20) -> JSONResponse:
        return await read(
            lambda conn: JSONResponse({"runs": pages.jsonable(repository.latest_runs(conn, limit))})
        )

    @app.get("/api/failures")
    async def failures_json(
        start: FromParam = None, end: ToParam = None, limit: LimitParam = 200
    ) -> JSONResponse:
        def work(conn: psycopg.Connection) -> JSONResponse:
            first, last = date_range(conn, start, end)
            rows = repository.failures(conn, first, last, limit)
            return JSONResponse(
                {"from": first.isoformat(), "to": last.isoformat(), "failures": pages.jsonable(rows)}
            )

        return await read(work)

    @app.get("/api/metrics")
    async def metrics_json(
        start: FromParam = None, end: ToParam = None, limit: LimitParam = 50
    ) -> JSONResponse:
        first, last = parse_day(start, "from"), parse_day(end, "to")
        return await read(
            lambda conn: JSONResponse(
                {"metrics": pages.jsonable(repository.run_metrics(conn, first, last, limit))}
            )
        )

    @app.get("/api/corporate-actions")
    async def corporate_actions_json(start: FromParam = None, end: ToParam = None) -> JSONResponse:
        """Return the corporate actions effective in the range, every symbol's conIds, the inactive ones."""

        def work(conn: psycopg.Connection) -> JSONResponse:
            first, last = date_range(conn, start, end)
            actions, identities, inactive = corporate_actions_data(conn, first, last)
            return JSONResponse(
                {
                    "from": first.isoformat(),
                    "to": last.isoformat(),
                    "corporate_actions": pages.jsonable(actions),
                    "identities": pages.jsonable(identities),
                    "inactive_symbols": pages.jsonable(inactive),
                }
            )

        return await read(work)

    def corporate_actions_data(
        conn: psycopg.Connection, first: dt.date, last: dt.date
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            repository.corporate_actions_between(conn, first, last),
            repository.identity_history(conn),
            repository.inactive_symbols(conn),
        )

    @app.get("/api/symbols/{symbol}")
    async def symbol_json(symbol: str, start: FromParam = None, end: ToParam = None) -> JSONResponse:
        def work(conn: psycopg.Connection) -> JSONResponse:
            found, bars, attempts = symbol_data(conn, symbol, start, end)
            return JSONResponse(
                {
                    "symbol": pages.jsonable([found])[0],
                    "bars": pages.jsonable(bars),
                    "attempts": pages.jsonable(attempts),
                }
            )

        return await read(work)

    def symbol_data(
        conn: psycopg.Connection, symbol: str, start_text: str | None, end_text: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        found = repository.symbol_row(conn, symbol.strip().upper())
        if found is None:
            raise HTTPException(status_code=404, detail=f"No symbol {symbol!r} in the symbols table")
        end = parse_day(end_text, "to") or found["latest_bar"] or today()
        start = parse_day(start_text, "from") or end - dt.timedelta(days=SYMBOL_DEFAULT_DAYS)
        try:
            coverage.check_report_range(start, end)
        except InvalidRangeError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return (
            found,
            repository.symbol_bars(conn, found["id"], start, end),
            repository.symbol_attempts(conn, found["id"]),
        )

    # -- HTML -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request, start: FromParam = None, end: ToParam = None) -> HTMLResponse:
        delay = coverage.freshness_delay()

        def work(conn: psycopg.Connection) -> HTMLResponse:
            first, last = date_range(conn, start, end)
            rows = coverage.coverage(conn, first, last)
            fresh = coverage.freshness(conn, dt.datetime.now(dt.UTC), delay)
            runs = repository.latest_runs(conn, 20)
            failed = repository.failures(conn, first, last, 100)
            metrics = repository.run_metrics(conn, limit=60)
            loaded = repository.has_resolved_symbols(conn)
            return HTMLResponse(
                pages.overview_page(
                    root(request),
                    first,
                    last,
                    rows,
                    fresh,
                    delay,
                    runs,
                    failed,
                    metrics,
                    symbols_loaded=loaded,
                )
            )

        return await read(work)

    @app.get("/corporate-actions", response_class=HTMLResponse)
    async def corporate_actions(
        request: Request, start: FromParam = None, end: ToParam = None
    ) -> HTMLResponse:
        def work(conn: psycopg.Connection) -> HTMLResponse:
            first, last = date_range(conn, start, end)
            actions, identities, inactive = corporate_actions_data(conn, first, last)
            return HTMLResponse(
                pages.corporate_actions_page(root(request), first, last, actions, identities, inactive)
            )

        return await read(work)

    @app.get("/symbols/", response_class=HTMLResponse)
    async def symbol_search(request: Request, symbol: str = "") -> Any:
        if not symbol.strip():
            raise HTTPException(status_code=400, detail="Query parameter 'symbol' is empty; give a symbol")
        return RedirectResponse(f"{root(request)}/symbols/{quote(symbol.strip().upper())}", status_code=303)

    # The symbol page (a chart), its candles, the session pages and Plotly's script: before the
    # catch-all below, under the app's permission check and the gate of ``read``.
    app.include_router(charts.create_router(read, today))

    # -- The API's own description, behind the same check -------------------------------------

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def openapi_page(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{root(request)}/openapi.json", title=f"{app.title} API")

    # Last: any other path answers 404 only to a user who passed the check, so nothing is anonymous.
    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def not_found(path: str) -> Response:
        raise HTTPException(status_code=404, detail=f"No page /{path} in the dashboard")

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Any:
        if request.url.path.startswith(f"{root(request)}/api/") or "/api/" in request.url.path:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return HTMLResponse(
            pages.error_page(root(request), exc.status_code, str(exc.detail)),
            exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    def server_error(request: Request, exc: Exception) -> Any:
        # Exception text can hold a connection string or a password: it goes to the log, never the client.
        ref = error_id()
        log.error("Dashboard error %s on %s", ref, request.url.path, exc_info=exc)
        return http_error(
            request,
            HTTPException(
                status_code=500,
                detail=f"The dashboard failed (error {ref}); the API server's log has the details.",
            ),
        )

    return app
