"""``make collect`` / ``make backfill`` / ``make report``: the operator CLI on this machine's embedded defaults.

``python -m ibkr_market_data_dev.local_cli COMMAND ...`` takes the commands and options of
``ibkr_market_data.cli``; before running one it fills in what is not configured (see ``local_env``):
Airflow's home, the ``market_data_db`` database on the local PostgreSQL, and, when ``ibkr_default``
is not configured, the TWS simulator on a loopback port, stopped when the command ends. It refuses
(exit 2) to serve simulated bars to a ``market_data_db`` that is configured. With
``IBKR_SYNTHETIC_SYMBOLS=N`` the simulator and the loaded universe gain N synthetic symbols.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ibkr_market_data.errors import BadInputError
from ibkr_market_data_dev import local_env
from ibkr_market_data_dev.simulated_ib import local_universe


def main(argv: Sequence[str] | None = None) -> int:
    # Parse first: a bad option ends here, before anything is started.
    from ibkr_market_data import cli

    args = cli.build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cli.check(args)
        # Read before anything starts: a bad universe file ends here with its file:line.
        universe = local_universe() if args.command != "report" else None
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    local_env.configure_airflow()
    try:
        local_env.check_local_setup()
    except local_env.LocalSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    local_env.ensure_market_db()
    if args.command == "report":  # reads the database only: no simulator
        cli.migrate_command()
        return cli.run(args)
    with local_env.local_ibkr():
        # The local universe (with any synthetic symbols) is loaded by every command, so a symbol
        # an earlier command loaded and this one's universe lacks is retired, not collected.
        return cli.run(args, universe=universe)


if __name__ == "__main__":
    sys.exit(main())
