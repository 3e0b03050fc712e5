"""Command line for operators: ``python -m ibkr_market_data.cli {migrate,load-symbols,collect,backfill}``.

``collect --date D`` runs the daily DAG once for D in this process (``dag.test()``), on the
embedded defaults of ``local_env`` unless connections are configured, prints the summary and exits
non-zero if the run failed.

``backfill --from A --to B [--symbols S,T] [--exchanges X,Y] [--dry-run]`` prints the gap report,
then runs the backfill DAG once in-process the same way; bad input exits 2 before any request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ibkr_market_data import local_env

log = logging.getLogger("ibkr_market_data.cli")


def migrate() -> str:
    from ibkr_market_data import schema

    url = local_env.ensure_market_db()
    schema.upgrade(url)
    return url


def load_symbols() -> int:
    """Migrate, load the universe and resolve contracts through IB; returns the unresolved count."""
    import psycopg

    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.settings import IBKR_CONN_ID
    from ibkr_market_data.symbols import load_symbols as load

    url = migrate()
    with psycopg.connect(url) as conn, IbkrHook(IBKR_CONN_ID) as hook:
        report = load(conn, hook)
    print(
        f"symbols: {report.loaded} in the universe, {len(report.resolved)} resolved now, "
        f"{len(report.unresolved)} unresolved"
    )
    for symbol, reason in sorted(report.unresolved.items()):
        print(f"  unresolved {symbol}: {reason}")
    return len(report.unresolved)


def print_run_summary(url: str, dag_id: str, run_id: str) -> None:
    import psycopg

    from ibkr_market_data import repository

    with psycopg.connect(url) as conn:
        counts = repository.run_summary(conn, dag_id, run_id)
        failures = repository.run_failures(conn, dag_id, run_id)
        bars = repository.run_records_collected(conn, dag_id, run_id)
    print(
        f"run {run_id}: "
        + (", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "nothing to do")
        + f"; {bars} bars stored"
    )
    for symbol, reason, code in failures:
        print(f"  failed {symbol} (IB code {code}): {reason}")


def ensure_symbols(url: str) -> None:
    """Load and resolve the universe if no symbol is active yet."""
    import psycopg

    from ibkr_market_data import repository

    with psycopg.connect(url) as conn:
        loaded = repository.has_active_symbols(conn)
    if not loaded:
        load_symbols()


def load_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` from ``dags/<dag_id>.py``, with Airflow's metadata schema in place for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    return DagBag(dag_folder=str(local_env.REPO_ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)


def collect(date: str | None, dry_run: bool = False) -> int:
    local_env.configure_airflow()
    simulator = local_env.ensure_ibkr()
    try:
        url = migrate()
        ensure_symbols(url)
        dag = load_dag("daily_market_data")
        conf: dict[str, object] = {"dry_run": dry_run}
        if date:
            conf["date"] = date
        dag_run = dag.test(run_conf=conf)
        print_run_summary(url, dag.dag_id, dag_run.run_id)
        print(f"state: {dag_run.state}")
        return 0 if str(dag_run.state) == "success" else 1
    finally:
        if simulator is not None:
            simulator.__exit__(None, None, None)


def backfill(start: str, end: str, symbols: str = "", exchanges: str = "", dry_run: bool = False) -> int:
    """Print the gap report, run the backfill DAG once in-process, print its summary.

    Returns 0 on success, 1 if the run failed, 2 on bad input (nothing sent).
    """
    local_env.configure_airflow()
    from ibkr_market_data.run_dates import InvalidRunParamError
    from ibkr_market_data.tasks import backfill as tasks
    from ibkr_market_data.tasks.common import as_name_list

    params: dict[str, object] = {
        "start_date": start,
        "end_date": end,
        "symbols": as_name_list(symbols),
        "exchanges": as_name_list(exchanges),
        "dry_run": dry_run,
    }
    try:
        request = tasks.check_params(params)
    except InvalidRunParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    simulator = local_env.ensure_ibkr()
    try:
        url = migrate()
        ensure_symbols(url)
        import psycopg

        with psycopg.connect(url) as conn:
            try:
                tasks.check_symbols(conn, request)
            except InvalidRunParamError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            report, _ = tasks.gap_report(conn, request, dt.datetime.now(dt.UTC))
        for line in report.lines():
            print(line)
        if dry_run:
            totals = report.totals()
            print(
                f"dry run: would send {totals['requests']} requests for {totals['symbols_with_gaps']} symbols"
            )
        dag = load_dag("backfill_market_data")
        dag_run = dag.test(run_conf=params)
        if not dry_run:
            print_run_summary(url, dag.dag_id, dag_run.run_id)
            with psycopg.connect(url) as conn:
                from ibkr_market_data import repository

                totals = repository.run_backfill_totals(conn, dag.dag_id, dag_run.run_id)
            print(
                f"requests sent {totals['requests_sent']}, bars collected {totals['bars_collected']}, "
                f"revised {totals['bars_revised']}, sessions without data at IB {totals['no_data_sessions']}"
            )
        print(f"state: {dag_run.state}")
        return 0 if str(dag_run.state) == "success" else 1
    finally:
        if simulator is not None:
            simulator.__exit__(None, None, None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ibkr_market_data.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema migrations to market_data_db")
    commands.add_parser("load-symbols", help="load the shipped universe and resolve it through IB")
    collect_parser = commands.add_parser("collect", help="one daily run, in-process")
    collect_parser.add_argument("--date", help="trading date YYYY-MM-DD (default: latest completed)")
    collect_parser.add_argument("--dry-run", action="store_true")
    backfill_parser = commands.add_parser(
        "backfill", help="fill the missing daily bars of a date range, in-process"
    )
    backfill_parser.add_argument("--from", dest="start", required=True, help="first date YYYY-MM-DD")
    backfill_parser.add_argument("--to", dest="end", required=True, help="last date YYYY-MM-DD, inclusive")
    backfill_parser.add_argument(
        "--symbols", default="", help="comma-separated symbols (default: all active)"
    )
    backfill_parser.add_argument("--exchanges", default="", help="comma-separated exchanges (default: all)")
    backfill_parser.add_argument(
        "--dry-run", action="store_true", help="print the gap report and requests only"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "migrate":
        local_env.configure_airflow()
        migrate()
        return 0
    if args.command == "load-symbols":
        local_env.configure_airflow()
        simulator = local_env.ensure_ibkr()
        try:
            load_symbols()
        finally:
            if simulator is not None:
                simulator.__exit__(None, None, None)
        return 0
    if args.command == "backfill":
        return backfill(args.start, args.end, args.symbols, args.exchanges, args.dry_run)
    return collect(args.date or None, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
