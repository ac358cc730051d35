"""Which SQL `image-versions query` runs: statements that only read, as DuckDB's parser says.

The parser classifies SELECT, FROM-first queries, WITH ... SELECT, VALUES, UNPIVOT, DESCRIBE,
SUMMARIZE and SHOW as SELECT statements. A PIVOT that leaves its IN list to the data is MULTI
instead, since DuckDB runs it as two statements (one that collects the values to pivot on, then
the query), and so is any statement that holds one, a COPY or a CREATE TABLE AS included. A MULTI
statement runs when its text also parses as a subquery, `SELECT * FROM (...)`: no COPY, CREATE,
INSERT or other writing statement does.

This is the first of two fences: the connection `query` runs on cannot reach the network nor
read or write a file outside the data dir, nor change those settings (warehouse.py).
"""

from __future__ import annotations

import re

import duckdb

from .errors import ConfigError

__all__ = ["READ_ONLY_FORMS", "check_read_only"]

READ_ONLY_FORMS = "SELECT, FROM, WITH, VALUES, PIVOT, UNPIVOT, DESCRIBE, SUMMARIZE, SHOW"
_WORD = re.compile(r"\w+")


def _is_query(text: str) -> bool:
    """Whether one statement's text parses as a subquery (on a line of its own, so that a
    trailing comment cannot swallow the closing parenthesis)."""
    body = text.rstrip().rstrip(";")
    try:
        return len(duckdb.extract_statements(f"SELECT * FROM (\n{body}\n)")) == 1
    except duckdb.Error:
        return False


def _leading_keyword(text: str) -> str:
    """The statement's first keyword (COPY, CREATE...), to name what was refused."""
    for start, kind in duckdb.tokenize(text):
        if kind == duckdb.token_type.keyword:
            found = _WORD.match(text, start)
            if found:
                return found.group().upper()
    return "this statement"


def check_read_only(sql: str) -> None:
    """ConfigError, one line naming the statement, unless every statement of `sql` only reads."""
    for statement in duckdb.extract_statements(sql):
        if statement.type == duckdb.StatementType.SELECT:
            continue
        if statement.type == duckdb.StatementType.MULTI:
            if _is_query(statement.query):
                continue
            kind = _leading_keyword(statement.query)
        else:
            kind = statement.type.name
        raise ConfigError(
            f"query failed: query runs read-only statements ({READ_ONLY_FORMS}), not {kind}"
        )
