"""``symbols``: the shipped universe and what IB said about each contract. See docs/schema.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import Connection

from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.universe import UniverseSymbol


@dataclass(frozen=True)
class SymbolRow:
    """The columns of a ``symbols`` row that planning and collecting read."""

    id: int
    symbol: str
    exchange: str
    primary_exchange: str
    currency: str
    sec_type: str
    con_id: int | None
    priority: int
    active: bool

    def listed_contract(self) -> ContractSpec:
        """Return the contract as the universe lists it, without the conId IB gave it."""
        return ContractSpec(
            symbol=self.symbol,
            exchange=self.exchange,
            primary_exchange=self.primary_exchange,
            currency=self.currency,
            sec_type=self.sec_type,
        )


_SYMBOL_COLUMNS = "id, symbol, exchange, primary_exchange, currency, sec_type, con_id, priority, active"


def upsert_universe(conn: Connection, symbols: Iterable[UniverseSymbol]) -> int:
    """Insert new symbols (inactive until resolved) and refresh known ones' list facts; return how many."""
    rows = [
        (
            s.symbol,
            s.exchange,
            s.primary_exchange,
            s.currency,
            s.sec_type,
            s.priority,
            s.asset_class,
            s.name,
            s.source_list,
        )
        for s in symbols
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO symbols (symbol, exchange, primary_exchange, currency, sec_type, priority,
                                 asset_class, name, source_list)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (symbol, primary_exchange, currency) DO UPDATE SET
                exchange = EXCLUDED.exchange, sec_type = EXCLUDED.sec_type,
                priority = EXCLUDED.priority, asset_class = EXCLUDED.asset_class,
                name = EXCLUDED.name, source_list = EXCLUDED.source_list, updated_at = NOW()
            WHERE (symbols.exchange, symbols.sec_type, symbols.priority, symbols.asset_class,
                   symbols.name, symbols.source_list)
                  IS DISTINCT FROM (EXCLUDED.exchange, EXCLUDED.sec_type, EXCLUDED.priority,
                                    EXCLUDED.asset_class, EXCLUDED.name, EXCLUDED.source_list)
            """,
            rows,
        )
    return len(rows)


def unresolved_symbols(conn: Connection) -> list[SymbolRow]:
    """Return the symbols with no conId yet."""
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE con_id IS NULL ORDER BY id")  # noqa: S608
        return [SymbolRow(*row) for row in cursor.fetchall()]


def mark_resolved(conn: Connection, symbol_id: int, con_id: int, primary_exchange: str) -> None:
    """Store the contract IB resolved symbol ``symbol_id`` to, and activate it; its first identity.

    :param primary_exchange: the listing exchange IB answered, which may correct the universe's.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE symbols SET con_id = %s, primary_exchange = %s, active = TRUE, inactive_reason = NULL,
                               inactive_since = NULL, resolved_at = NOW(), updated_at = NOW()
            WHERE id = %s
            """,
            (con_id, primary_exchange, symbol_id),
        )
        cursor.execute(
            "INSERT INTO symbol_identities (symbol_id, con_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (symbol_id, con_id),
        )


def symbol_id_by_con_id(conn: Connection, con_id: int) -> int | None:
    """Return the id of the symbol resolved to ``con_id``, or None."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM symbols WHERE con_id = %s", (con_id,))
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def delete_unresolved_symbol(conn: Connection, symbol_id: int) -> None:
    """Remove a row that never resolved (so nothing refers to it); a resolved row is never deleted."""
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM symbols WHERE id = %s AND con_id IS NULL", (symbol_id,))


def mark_unresolved(conn: Connection, symbol_id: int, reason: str) -> None:
    """Deactivate symbol ``symbol_id``, recording why IB could not resolve it."""
    with conn.cursor() as cursor:
        cursor.execute(
            "UPDATE symbols SET active = FALSE, inactive_reason = %s, updated_at = NOW(),"
            " inactive_since = COALESCE(inactive_since, NOW()) WHERE id = %s",
            (reason, symbol_id),
        )


def select_symbols(
    conn: Connection,
    *,
    symbols: Sequence[str] | None = None,
    exchanges: Sequence[str] | None = None,
    priority: str = "all",
    active_only: bool = True,
) -> list[SymbolRow]:
    """Return the symbols matching the filters, high priority first.

    :param symbols: symbol names to keep; None or empty for all.
    :param exchanges: exchanges to keep, listing or routing; None or empty for all.
    :param priority: ``all``, ``high`` (priority 1) or ``low`` (above 1).
    :param active_only: leave out inactive symbols.
    :raises ValueError: ``priority`` is none of the three.
    """
    clauses: list[str] = []
    params: list[list[str]] = []
    if active_only:
        clauses.append("active")
    if symbols:
        clauses.append("symbol = ANY(%s)")
        params.append(list(symbols))
    if exchanges:
        clauses.append("(primary_exchange = ANY(%s) OR exchange = ANY(%s))")
        params += [list(exchanges), list(exchanges)]
    if priority == "high":
        clauses.append("priority = 1")
    elif priority == "low":
        clauses.append("priority > 1")
    elif priority != "all":
        raise ValueError(f"priority must be all, high or low, not {priority!r}")
    where = " AND ".join(clauses) or "TRUE"
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE {where} ORDER BY priority, symbol",  # noqa: S608
            params,
        )
        return [SymbolRow(*row) for row in cursor.fetchall()]


def has_active_symbols(conn: Connection) -> bool:
    """Check whether any symbol is active."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM symbols WHERE active)")
        row = cursor.fetchone()
        return bool(row and row[0])


def has_resolved_symbols(conn: Connection) -> bool:
    """Check whether IB ever resolved a symbol: none has a conId before the universe's first load."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM symbols WHERE con_id IS NOT NULL)")
        row = cursor.fetchone()
        return bool(row and row[0])


def has_unanswered_symbols(conn: Connection) -> bool:
    """Check whether any symbol waits for IB's first answer: no conId and no reason IB gave."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM symbols WHERE con_id IS NULL AND inactive_reason IS NULL)"
        )
        row = cursor.fetchone()
        return bool(row and row[0])


def known_symbol_names(conn: Connection) -> set[str]:
    """Return the name of every symbol in the table, active or not."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT DISTINCT symbol FROM symbols")
        return {row[0] for row in cursor.fetchall()}
