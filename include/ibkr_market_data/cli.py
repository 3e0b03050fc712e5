"""Command line for operators: migrate, load-symbols, collect, backfill, report and export.

Every command works on the Airflow connections ``market_data_db`` and ``ibkr_default``, wherever Airflow
keeps them; ``collect`` and ``backfill`` run their DAG once in this process. Bad input or a missing
connection ends in one ``error:`` line and exit status 2, before any request. See docs/operations.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ibkr_market_data.bars import DAILY_TIMEFRAME
from ibkr_market_data.cli_connections import provide_connections
from ibkr_market_data.errors import BadInputError
from ibkr_market_data.settings import DAILY_EXCHANGES, IBKR_CONN_ID, MARKET_DATA_CONN_ID
from ibkr_market_data.tasks.database import market_connection

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ibkr_market_data.universe import UniverseSymbol

log = logging.getLogger("ibkr_market_data.cli")


def migrate_command() -> None:
    """Bring the market-data database to the latest schema.

    :raises MissingConnectionError: ``market_data_db`` is defined nowhere Airflow looks.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from ibkr_market_data import schema

    provide_connections([MARKET_DATA_CONN_ID])
    schema.upgrade(PostgresHook(postgres_conn_id=MARKET_DATA_CONN_ID).get_uri())


def load_symbols_command(universe: list[UniverseSymbol] | None = None) -> int:
    """Migrate, load ``universe`` (default: the universe files) and resolve it through IB.

    Symbols the universe no longer lists are retired (inactive, their bars kept). Return how many
    symbols are left unresolved, IB's refusals and those IB could not be asked about.

    :raises BadInputError: a row of a universe file or of ``IBKR_CORPORATE_ACTIONS_FILE`` is bad,
        before anything is migrated.
    :raises MissingConnectionError: ``market_data_db`` or ``ibkr_default`` is defined nowhere Airflow looks.
    """
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.known_actions import read_known_actions
    from ibkr_market_data.symbols import load_symbols as load
    from ibkr_market_data.universe import load_universe

    # Bad files fail here, before anything is migrated or requested.
    entries = load_universe() if universe is None else universe
    known = read_known_actions()
    provide_connections([MARKET_DATA_CONN_ID, IBKR_CONN_ID])
    migrate_command()
    with market_connection() as conn, IbkrHook(IBKR_CONN_ID) as hook:
        report = load(conn, hook, entries, known)
    pending = (
        f", {len(report.pending)} not asked (IB unreachable; the next load asks)" if report.pending else ""
    )
    print(
        f"symbols: {report.loaded} in the universe, {len(report.resolved)} resolved now, "
        f"{len(report.unresolved)} unresolved{pending}, "
        f"{len(report.retired)} retired (in no universe file now)"
    )
    for symbol, reason in sorted(report.unresolved.items()):
        print(f"  unresolved {symbol}: {reason}")
    for symbol, reason in sorted(report.pending.items()):
        print(f"  not asked {symbol}: {reason}")
    return len(report.unresolved) + len(report.pending)


def print_run_summary(dag_id: str, run_id: str) -> None:
    """Print the run's outcome per symbol, its failures and data-quality findings, and what is stored.

    What is stored is printed for each session the run collected.
    """
    from ibkr_market_data import repository
    from ibkr_market_data.run_summary import read_run_summary, read_session_coverage

    with market_connection() as conn:
        report = read_run_summary(conn, dag_id, run_id)
        coverage = read_session_coverage(conn, dag_id, run_id)
        findings = repository.run_quality_findings(conn, run_id)
        by_timeframe = repository.run_summary_by_timeframe(conn, dag_id, run_id)
    print(f"run {run_id}: {report.status_line()}")
    if set(by_timeframe) - {DAILY_TIMEFRAME}:
        for timeframe, counts in sorted(by_timeframe.items()):
            statuses = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
            print(f"  {timeframe}: {statuses}")
    for failure in report.failures:
        print(f"  failed {failure.symbol} (IB code {failure.ib_code}): {failure.reason}")
    for symbol, day, check, severity, detail in findings:
        print(f"  data quality ({severity}): {symbol} {day.isoformat()} {check}: {detail}")
    for session in coverage:
        print(f"  stored for {session.line()}")


def ensure_symbols(universe: list[UniverseSymbol] | None = None) -> None:
    """Load and resolve ``universe``; without one, the universe files if no symbol is active yet.

    Also when some symbols still wait for IB's first answer (a load an outage cut short).
    """
    from ibkr_market_data import repository

    migrate_command()
    if universe is not None:
        load_symbols_command(universe)
        return
    with market_connection() as conn:
        loaded = repository.has_active_symbols(conn) and not repository.has_unanswered_symbols(conn)
    if not loaded:
        load_symbols_command()


def load_dag(dag_id: str) -> DAG:
    """Return the DAG ``dag_id`` from the configured DAGs folder, with Airflow's metadata schema in place.

    The schema lets ``dag.test()`` run the DAG.
    """
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    dag = DagBag(dag_folder=conf.get("core", "dags_folder")).get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"DAG {dag_id} is not in {conf.get('core', 'dags_folder')}")
    return dag


def check_collect_date(date: str | None, now: dt.datetime) -> None:
    """Refuse a malformed, future or non-trading ``--date`` before anything is migrated or requested."""
    from ibkr_market_data.errors import InvalidRunParamError
    from ibkr_market_data.run_dates import check_trading_date, parse_date_param

    try:
        day = parse_date_param(date)
        if day is not None:
            check_trading_date(day, DAILY_EXCHANGES, now)
    except InvalidRunParamError as exc:
        raise BadInputError(str(exc).replace("Param 'date'", "--date")) from None


def collect_command(
    date: str | None,
    dry_run: bool = False,
    timeframe: str = "",
    symbols: str = "",
    universe: list[UniverseSymbol] | None = None,
) -> int:
    """Run the daily DAG once in-process for ``date``, ``timeframe`` and ``symbols``; return the exit status.

    :param universe: load it first (``ensure_symbols``); default: the universe files, if nothing is loaded.
    :raises BadInputError: a bad date or timeframe, an unknown symbol or a missing connection (a dry run
        needs no ``ibkr_default`` once symbols are loaded), before any request.
    """
    from ibkr_market_data import repository
    from ibkr_market_data.tasks.params import as_name_list

    check_collect_date(date, dt.datetime.now(dt.UTC))
    check_timeframe(timeframe)
    provide_connections([MARKET_DATA_CONN_ID] if dry_run else [MARKET_DATA_CONN_ID, IBKR_CONN_ID])
    ensure_symbols(universe)
    names = as_name_list(symbols)
    with market_connection() as conn:
        unknown = sorted(set(names) - repository.known_symbol_names(conn))
    if unknown:
        raise BadInputError(
            f"--symbols names unknown symbols: {', '.join(unknown)}; "
            "add them to the universe and run load-symbols"
        )
    dag = load_dag("daily_market_data")
    conf: dict[str, object] = {"dry_run": dry_run, "symbols": names}
    if date:
        conf["date"] = date
    if timeframe:
        conf["timeframe"] = timeframe
    dag_run = dag.test(run_conf=conf)
    print_run_summary(dag.dag_id, dag_run.run_id)
    print(f"state: {dag_run.state}")
    return 0 if str(dag_run.state) == "success" else 1


def backfill_command(
    start: str,
    end: str,
    symbols: str = "",
    exchanges: str = "",
    dry_run: bool = False,
    recheck_no_data: bool = False,
    timeframe: str = "",
    universe: list[UniverseSymbol] | None = None,
) -> int:
    """Print the gap report, run the backfill DAG once in-process and print its summary.

    Return 0 on success, 1 if the run failed.

    :param universe: load it first (``ensure_symbols``); default: the universe files, if nothing is loaded.
    :raises BadInputError: a bad param, an unknown symbol or a missing connection (exit 2), before any
        request.
    """
    from ibkr_market_data import repository
    from ibkr_market_data.errors import InvalidRunParamError
    from ibkr_market_data.tasks import backfill as tasks
    from ibkr_market_data.tasks.params import as_name_list

    params: dict[str, object] = {
        "start_date": start,
        "end_date": end,
        "symbols": as_name_list(symbols),
        "exchanges": as_name_list(exchanges),
        "dry_run": dry_run,
        "recheck_no_data": recheck_no_data,
        "timeframe": timeframe or "1day",
    }
    try:
        request = tasks.check_params(params)
    except InvalidRunParamError as exc:
        raise BadInputError(str(exc)) from None
    provide_connections([MARKET_DATA_CONN_ID] if dry_run else [MARKET_DATA_CONN_ID, IBKR_CONN_ID])
    ensure_symbols(universe)
    with market_connection() as conn:
        try:
            tasks.check_known_symbols(conn, request)
        except InvalidRunParamError as exc:
            raise BadInputError(str(exc)) from None
        report, _ = tasks.gap_report(conn, request, dt.datetime.now(dt.UTC))
    for line in report.lines():
        print(line)
    if dry_run:
        totals = report.totals()
        print(f"dry run: would send {totals['requests']} requests for {totals['symbols_with_gaps']} symbols")
    dag = load_dag("backfill_market_data")
    dag_run = dag.test(run_conf=params)
    if not dry_run:
        print_run_summary(dag.dag_id, dag_run.run_id)
        with market_connection() as conn:
            run_totals = repository.run_backfill_totals(conn, dag.dag_id, dag_run.run_id)
        print(
            f"requests sent {run_totals['requests_sent']}, "
            f"bars collected {run_totals['bars_collected']}, "
            f"revised {run_totals['bars_revised']}, "
            f"sessions without data at IB {run_totals['no_data_sessions']}"
        )
    print(f"state: {dag_run.state}")
    return 0 if str(dag_run.state) == "success" else 1


def report_command(start: str | None, end: str | None) -> int:
    """Print coverage, failures and run metrics of ``start``..``end`` (default: the last 30 trading dates).

    :raises BadInputError: a malformed date, a reversed or too long range, or no ``market_data_db``, before
        the database is read.
    """
    from ibkr_market_data import range_report

    first, last = range_report.parse_range(start, end, dt.datetime.now(dt.UTC).date())
    provide_connections([MARKET_DATA_CONN_ID])
    with market_connection() as conn:
        range_report.render(conn, first or range_report.default_start(conn, last), last, sys.stdout)
    return 0


def check_timeframe(timeframe: str) -> None:
    """Refuse an unknown ``--timeframe`` (or a bad timeframe setting) naming it."""
    from ibkr_market_data.errors import InvalidRunParamError
    from ibkr_market_data.tasks.params import selected_timeframe

    try:
        selected_timeframe({"timeframe": timeframe})
    except InvalidRunParamError as exc:
        raise BadInputError(str(exc).replace("Param 'timeframe'", "--timeframe")) from None


def check_export(args: argparse.Namespace) -> None:
    """Refuse a missing or bad ``--from``/``--to``, ``--timeframe`` or ``--out`` of ``export``, naming it."""
    from ibkr_market_data import exports, reader
    from ibkr_market_data.errors import ReadRequestError

    try:
        if not args.start or not args.end:
            raise ReadRequestError(
                "--from and --to are required: the first and last session dates, YYYY-MM-DD"
            )
        reader.check_range(args.start, args.end, ("--from", "--to"))
        try:
            reader.check_timeframe(args.timeframe)
        except ReadRequestError as exc:
            raise ReadRequestError(f"--timeframe: {exc}") from None
        exports.check_output_dir(args.out, "--out")
    except ReadRequestError as exc:
        raise BadInputError(str(exc)) from None


def export_command(args: argparse.Namespace) -> int:
    """Write the changed Parquet files of the stored bars to ``--out`` and print what was written.

    Returns 0, or 1 when the database or the output directory fails on the way; raises BadInput
    (exit 2) for an unknown symbol or no ``market_data_db``.
    """
    import psycopg

    from ibkr_market_data import exports
    from ibkr_market_data.errors import ReadRequestError
    from ibkr_market_data.tasks.params import as_name_list

    provide_connections([MARKET_DATA_CONN_ID])
    try:
        with market_connection() as conn:
            summary = exports.export_bars(
                args.out, as_name_list(args.symbols) or None, args.timeframe, args.start, args.end, conn=conn
            )
    except ReadRequestError as exc:
        raise BadInputError(str(exc)) from None
    except psycopg.errors.UndefinedTable as exc:
        print(f"error: {str(exc).splitlines()[0]}: run migrate first", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: writing the export to {args.out} failed: {exc}", file=sys.stderr)
        return 1
    print(summary.line())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the command line and its subcommands."""
    parser = argparse.ArgumentParser(prog="python -m ibkr_market_data.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema migrations to market_data_db")
    commands.add_parser("load-symbols", help="load the shipped universe and resolve it through IB")
    collect_parser = commands.add_parser("collect", help="one daily run, in-process")
    collect_parser.add_argument("--date", help="trading date YYYY-MM-DD (default: latest completed)")
    collect_parser.add_argument("--dry-run", action="store_true")
    collect_parser.add_argument(
        "--timeframe",
        default="",
        help="1day, 1hour, 5min or 1min for every selected symbol (default: each symbol's configured ones)",
    )
    collect_parser.add_argument("--symbols", default="", help="comma-separated symbols (default: all active)")
    backfill_parser = commands.add_parser(
        "backfill", help="fill the missing bars of a date range, in-process"
    )
    backfill_parser.add_argument("--from", dest="start", required=True, help="first date YYYY-MM-DD")
    backfill_parser.add_argument("--to", dest="end", required=True, help="last date YYYY-MM-DD, inclusive")
    backfill_parser.add_argument(
        "--symbols", default="", help="comma-separated symbols (default: all active)"
    )
    backfill_parser.add_argument("--exchanges", default="", help="comma-separated exchanges (default: all)")
    backfill_parser.add_argument("--timeframe", default="", help="1day (default), 1hour, 5min or 1min")
    backfill_parser.add_argument(
        "--recheck-no-data",
        action="store_true",
        help="ask IB again for sessions settled as having no data",
    )
    backfill_parser.add_argument(
        "--dry-run", action="store_true", help="print the gap report and requests only"
    )
    report_parser = commands.add_parser("report", help="coverage, failures and run metrics of a date range")
    report_parser.add_argument(
        "--from", dest="start", help="first trading date YYYY-MM-DD (default: 30 back)"
    )
    report_parser.add_argument("--to", dest="end", help="last trading date YYYY-MM-DD (default: today)")
    export_parser = commands.add_parser(
        "export", help="write the stored bars as Parquet files (only the files that changed)"
    )
    export_parser.add_argument("--from", dest="start", default="", help="first session date YYYY-MM-DD")
    export_parser.add_argument("--to", dest="end", default="", help="last session date YYYY-MM-DD, inclusive")
    export_parser.add_argument("--timeframe", default="1day", help="1day (default), 1hour, 5min or 1min")
    export_parser.add_argument("--symbols", default="", help="comma-separated symbols (default: all)")
    export_parser.add_argument("--out", default="", help="directory to write into (created if missing)")
    return parser


def check(args: argparse.Namespace) -> None:
    """Refuse bad values of the parsed command before anything is migrated, started or requested."""
    from ibkr_market_data.errors import InvalidRunParamError
    from ibkr_market_data.tasks import backfill as tasks
    from ibkr_market_data.tasks.params import check_quality_settings

    now = dt.datetime.now(dt.UTC)
    if args.command == "collect":
        check_collect_date(args.date, now)
        check_timeframe(args.timeframe)
        try:
            check_quality_settings()
        except InvalidRunParamError as exc:
            raise BadInputError(str(exc)) from None
    elif args.command == "report":
        from ibkr_market_data.range_report import parse_range

        parse_range(args.start, args.end, now.date())
    elif args.command == "export":
        check_export(args)
    elif args.command == "backfill":
        try:
            tasks.check_params(
                {
                    "start_date": args.start,
                    "end_date": args.end,
                    "exchanges": args.exchanges,
                    "timeframe": args.timeframe,
                },
                now,
            )
        except InvalidRunParamError as exc:
            raise BadInputError(str(exc)) from None


def run(args: argparse.Namespace, universe: list[UniverseSymbol] | None = None) -> int:
    """Run the parsed command.

    Bad input (a value, a connection defined nowhere, or an extra of the ``ibkr`` connection) ends in
    one ``error:`` line and exit 2; an unreachable gateway or database in one ``error:`` line and exit 1.

    :param universe: the symbols ``load-symbols``, ``collect`` and ``backfill`` load; default the
        universe files (``collect`` and ``backfill`` load them only when no symbol is active).
    """
    import psycopg

    from ibkr_market_data.errors import IbkrConfigError, IbkrError

    try:
        check(args)
        if args.command == "migrate":
            migrate_command()
            return 0
        if args.command == "load-symbols":
            load_symbols_command(universe)
            return 0
        if args.command == "report":
            return report_command(args.start, args.end)
        if args.command == "export":
            return export_command(args)
        if args.command == "backfill":
            return backfill_command(
                args.start,
                args.end,
                args.symbols,
                args.exchanges,
                args.dry_run,
                args.recheck_no_data,
                args.timeframe,
                universe,
            )
        return collect_command(args.date or None, args.dry_run, args.timeframe, args.symbols, universe)
    except (BadInputError, IbkrConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (IbkrError, psycopg.OperationalError) as exc:
        # Not bad input but an unreachable gateway or database: one line, and the configured target.
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
