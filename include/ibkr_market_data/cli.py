"""Command line for operators: ``python -m ibkr_market_data.cli {migrate,load-symbols,collect}``.

``collect --date D`` runs the daily DAG once for D in this process (``dag.test()``), on the
embedded defaults of ``local_env`` unless connections are configured, prints the summary and exits
non-zero if the run failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
    print(f"symbols: {report.loaded} in the universe, {len(report.resolved)} resolved now, "
          f"{len(report.unresolved)} unresolved")
    for symbol, reason in sorted(report.unresolved.items()):
        print(f"  unresolved {symbol}: {reason}")
    return len(report.unresolved)


def print_run_summary(url: str, dag_id: str, run_id: str) -> None:
    import psycopg

    from ibkr_market_data import repository

    with psycopg.connect(url) as conn:
        counts = repository.run_summary(conn, dag_id, run_id)
        failures = repository.run_failures(conn, dag_id, run_id)
        bars = conn.execute(
            "SELECT COALESCE(SUM(records_collected), 0) FROM collection_logs WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        ).fetchone()[0]
    print(f"run {run_id}: " + (", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "nothing to do")
          + f"; {bars} bars stored")
    for symbol, reason, code in failures:
        print(f"  failed {symbol} (IB code {code}): {reason}")


def collect(date: str | None, dry_run: bool = False) -> int:
    local_env.configure_airflow()
    simulator = local_env.ensure_ibkr()
    try:
        url = migrate()
        import psycopg

        with psycopg.connect(url) as conn:
            has_symbols = conn.execute("SELECT EXISTS (SELECT 1 FROM symbols WHERE active)").fetchone()[0]
        if not has_symbols:
            load_symbols()

        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb()
        dag = DagBag(dag_folder=str(local_env.REPO_ROOT / "dags")).get_dag("daily_market_data")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ibkr_market_data.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema migrations to market_data_db")
    commands.add_parser("load-symbols", help="load the shipped universe and resolve it through IB")
    collect_parser = commands.add_parser("collect", help="one daily run, in-process")
    collect_parser.add_argument("--date", help="trading date YYYY-MM-DD (default: latest completed)")
    collect_parser.add_argument("--dry-run", action="store_true")
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
    return collect(args.date or None, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
