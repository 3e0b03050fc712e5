"""``make report``: ``ibkr_market_data.report`` on this machine's market_data database unless one is configured."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ibkr_market_data_dev import local_env


def main(argv: Sequence[str] | None = None) -> int:
    from ibkr_market_data import report

    args = report.build_parser().parse_args(argv)
    try:  # bad dates end here, before any database is touched
        report.parse_range(args.start, args.end, report.dt.date.today())
    except report.BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    local_env.configure_airflow()
    local_env.ensure_market_db()
    from ibkr_market_data import cli

    cli.migrate()
    return report.main(argv)


if __name__ == "__main__":
    sys.exit(main())
