"""Run a PostgreSQL server of its own, on a free loopback port, that a fault may stop and restart.

The fault campaign's market-data database lives here, never on the shared server; the binaries
are the ``pgserver`` wheel's. See docs/fault-campaign.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_SYSTEM_USER = "pgserver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """``initdb`` in a temporary directory; :meth:`start`, :meth:`stop`, :meth:`remove`."""

    def __init__(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH, create_command_function
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        self._pg_ctl = create_command_function("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="ibkr-market-data-pg-"))
        self.pgdata = self.root / "pgdata"
        self.port = _free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            entry = ensure_user_exists(_SYSTEM_USER)
            assert entry is not None
            self._user = _SYSTEM_USER
            bin_path = POSTGRES_BIN_PATH
            ensure_prefix_permissions(bin_path)
            read_execute = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(bin_path, read_execute)
            ensure_folder_permissions(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            self.root.chmod(0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        create_command_function("initdb")(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata, user=self._user
        )

    @property
    def url(self) -> str:
        """The URL of the server's ``postgres`` database, as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Serve on 127.0.0.1:port; returns once it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        log_file = self.root / "server.log"
        self._pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(log_file), "start"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=90,
        )
        log.info("Throwaway PostgreSQL serving on 127.0.0.1:%s", self.port)

    def stop(self) -> None:
        """Stop now (fast shutdown: open sessions are cut, as in a server restart)."""
        self._pg_ctl(
            ["-w", "-t", "60", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._user, timeout=90
        )
        log.info("Throwaway PostgreSQL on port %s stopped", self.port)

    def remove(self) -> None:
        """Stop if running and delete its files."""
        if (self.pgdata / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
