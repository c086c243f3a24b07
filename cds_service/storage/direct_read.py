"""One SELECT, compiled once, run on the SQLite reader's own DB-API connection.

The override look-up runs on every card-showing hook call. On SQLite (the embedded default) the
read itself takes ~0.02 ms; SQLAlchemy's per-execution work around it (execution context, result
object, pool bookkeeping) took ~0.15 ms in isolation and ~0.8 ms of a busy worker's hook call. So
the statement is compiled once, by SQLAlchemy and for the reader's dialect, and each call only
converts its parameters and the result row with the column types' own processors (the same
conversions SQLAlchemy applies), then runs the SQL on a pooled connection of the reader engine.
The statement stays the one SQLAlchemy expression the PostgreSQL path runs, and the storage tests run
both (tests/storage/test_override_memory.py).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select


class DirectRead:
    """`statement` compiled for `engine`'s dialect (a positional paramstyle: SQLite's), with the bind
    and result processors of its parameters' and columns' types."""

    def __init__(self, statement: Select[Any], engine: Engine):
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:  # pragma: no cover - SQLite's paramstyle is positional
            raise ValueError("a positional paramstyle is expected")
        self._sql = str(compiled)
        self._compiled = compiled
        self._order = tuple(compiled.positiontup)
        self._bind: dict[str, Callable[[Any], Any] | None] = {
            name: compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in set(self._order)
        }
        columns = list(statement.selected_columns)
        self._result = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
        self._row: Any = namedtuple("Row", [str(column.key) for column in columns])  # type: ignore[misc]  # noqa: PYI024

    def first(self, engine: Engine, params: Mapping[str, Any]) -> Any:
        """The first row (with attribute access, as SQLAlchemy's), or None."""
        values = self._compiled.construct_params(dict(params))
        args = []
        for name in self._order:
            process = self._bind[name]
            args.append(process(values[name]) if process is not None else values[name])
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                row = cursor.execute(self._sql, args).fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool
        if row is None:
            return None
        values_out = [process(v) if process is not None else v for process, v in zip(self._result, row, strict=True)]
        return self._row._make(values_out)
