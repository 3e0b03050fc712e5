"""Print a Docker secret for Airflow's ``*_CMD`` settings: as it is, or URL-encoded into a URL.

    python read_secret.py FILE              the file's text, without its trailing newline
    python read_secret.py FILE TEMPLATE     TEMPLATE with {secret} replaced by the URL-encoded text

Airflow uses a ``_CMD`` command's output as it is, so nothing is printed after the value. The secret
itself never reaches a command line. Run it with ``python -I -S``: it needs the standard library
only, and every Airflow process start runs it once per setting. See docs/production.md#secrets.
"""

from __future__ import annotations

import sys
import urllib.parse


def secret_value(path: str, template: str | None = None) -> str:
    """Return the secret in ``path``, or ``template`` with ``{secret}`` as its URL-encoded form.

    :raises ValueError: the secret is empty, or the template has no ``{secret}``.
    """
    with open(path, encoding="utf-8") as file:
        secret = file.read().rstrip("\r\n")
    if not secret:
        raise ValueError(f"{path} is empty: write the secret into it")
    if template is None:
        return secret
    if "{secret}" not in template:
        raise ValueError(f"the template for {path} has no {{secret}} to replace")
    return template.replace("{secret}", urllib.parse.quote(secret, safe=""))


def main(argv: list[str]) -> int:
    """Print the value; on a bad file or template, one ``error:`` line and exit status 2."""
    if len(argv) not in (1, 2):
        print("usage: read_secret.py FILE [TEMPLATE]", file=sys.stderr)
        return 2
    try:
        value = secret_value(*argv)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
