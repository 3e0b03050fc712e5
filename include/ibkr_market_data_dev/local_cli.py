"""``make collect``, ``backfill``, ``report``, ``export``: the operator CLI on this machine's defaults.

It fills in what is not configured (``local_env``), starts the simulator when ``ibkr_default`` is
not configured, and sends log records to ``.local/logs/COMMAND.log``.
See docs/development.md#the-local-commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ibkr_market_data.errors import BadInputError
from ibkr_market_data_dev import local_env, terminal
from ibkr_market_data_dev.simulated_ib import local_universe


def main(argv: Sequence[str] | None = None) -> int:
    """Run one operator command on this machine's defaults; return its exit status."""
    # Parse first: a bad option ends here, before anything is started.
    from ibkr_market_data import cli

    args = cli.build_parser().parse_args(argv)
    # Until the log file takes over, only warnings reach the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cli.check(args)
        # Read before anything starts: a bad universe file ends here with its file:line.
        universe = local_universe() if args.command not in ("report", "export") else None
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    local_env.configure_airflow()
    if args.command == "export":
        return export(args)
    try:
        local_env.check_local_setup()
    except local_env.LocalSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with terminal.logs_to_file(terminal.LOG_DIR / f"{args.command}.log") as log_file:
        market_db_url = local_env.ensure_market_db()
        if args.command == "report":  # reads the database only: no simulator, and the report is the output
            cli.migrate_command()
            return cli.run(args)
        print(f"log: {terminal.shown(log_file)} (Airflow's task logs and the simulator's)")
        print(terminal.database_line(market_db_url))
        with local_env.local_ibkr() as simulator, terminal.in_process_progress(market_db_url):
            print(terminal.simulator_line(simulator))
            # The local universe (with any synthetic symbols) is loaded by every command, so a symbol
            # an earlier command loaded and this one's universe lacks is retired, not collected.
            return cli.run(args, universe=universe)


def export(args: argparse.Namespace) -> int:
    """Export the bars of ``market_data_db`` (local unless configured) as Parquet: ``make export``.

    It only reads: no simulator, and a configured ``market_data_db`` is what it should read. The
    local database is brought to the latest schema first, so a fresh clone exports nothing, not an error.
    """
    from ibkr_market_data import cli
    from ibkr_market_data.settings import MARKET_DATA_CONN_ID

    local = not local_env.is_configured(MARKET_DATA_CONN_ID)
    local_env.ensure_market_db()
    if local:
        cli.migrate_command()
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
