"""The one place SQL differs between SQLite and PostgreSQL.

Storage writes its SQL once, in SQLite's dialect with `?` or `:name` placeholders (see STYLE.md),
and never asks which backend it runs on. On PostgreSQL every statement passes through
`postgres()`, which rewrites the few constructs that differ:

- placeholders: `?` -> `%s`, `:name` -> `%(name)s` (and a literal `%` -> `%%`);
- `x IS ?` / `x IS NOT ?` (SQLite's null-safe comparison) -> `IS [NOT] DISTINCT FROM`;
- scalar `max(a, b)` / `min(a, b)` -> `GREATEST` / `LEAST`;
- `json_extract(col, '$.key')` -> `(col::jsonb ->> 'key')` (text: the SQL casts where it needs a number);
- `json_each(col, '$.key')` -> the elements of that JSON array as rows with a `value` column (text);
- the hint `/* FOR UPDATE SKIP LOCKED */`, a comment SQLite ignores, becomes the clause itself, so a
  queue claim on PostgreSQL skips rows another worker is claiming instead of waiting for them;
- `BEGIN IMMEDIATE` -> `BEGIN` (the exclusive write turn is an advisory lock there: storage/postgres.py).

Migrations (`postgres_script`) also map column types: an `id INTEGER PRIMARY KEY` becomes an
identity column, other INTEGERs (Discord ids are 64-bit) BIGINT, REAL DOUBLE PRECISION, BLOB BYTEA,
and `DROP TABLE` gets CASCADE (SQLite rebuilds a table by create-copy-drop-rename; PostgreSQL's
foreign keys point at the dropped table, so storage/postgres.py saves and restores them around it),
and SQLite's `RAISE(ABORT, ...)` triggers become PL/pgSQL trigger functions.
"""

from __future__ import annotations

import functools
import re

# A string literal, a comment, or anything else: literals and comments are never rewritten.
_TOKENS = re.compile(r"('(?:[^']|'')*')|(--[^\n]*)|(/\*.*?\*/)|([^'\-/]+|[\-/])", re.S)

_SKIP_LOCKED_HINT = "/* FOR UPDATE SKIP LOCKED */"
_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", re.I)
_JSON_EACH = re.compile(r"json_each\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", re.I)
_SCALAR_MINMAX = re.compile(r"\b(max|min)\(([^(),]+,[^()]+)\)", re.I)  # two or more arguments: not the aggregate
_IS_PARAM = re.compile(r"\bIS\s+(NOT\s+)?(?=\?|:\w)", re.I)
_PARAM = re.compile(r"\?|(?<!:):(\w+)|%")


def _outside_literals(sql: str, fn, *, escape: bool) -> str:
    """Apply `fn` to the parts of `sql` that are neither string literals nor comments; with `escape`,
    double every `%` inside those (psycopg reads `%` as a placeholder everywhere in a query with parameters)."""
    out = []
    for literal, line_comment, block_comment, code in _TOKENS.findall(sql):
        if code:
            out.append(fn(code))
        elif block_comment == _SKIP_LOCKED_HINT:
            out.append("FOR UPDATE SKIP LOCKED")
        else:
            kept = literal or line_comment or block_comment
            out.append(kept.replace("%", "%%") if escape else kept)
    return "".join(out)


def _placeholders(code: str) -> str:
    code = _IS_PARAM.sub(lambda m: "IS NOT DISTINCT FROM " if not m.group(1) else "IS DISTINCT FROM ", code)
    return _PARAM.sub(lambda m: "%s" if m.group(0) == "?" else "%%" if m.group(0) == "%" else f"%({m.group(1)})s",
                      code)


def _functions(sql: str) -> str:
    sql = _SCALAR_MINMAX.sub(lambda m: f"{'GREATEST' if m.group(1).lower() == 'max' else 'LEAST'}({m.group(2)})", sql)
    sql = _JSON_EXTRACT.sub(r"(\1::jsonb ->> '\2')", sql)
    return _JSON_EACH.sub(r"jsonb_array_elements_text(\1::jsonb -> '\2') AS json_each(value)", sql)


@functools.lru_cache(maxsize=1024)
def postgres(sql: str) -> str:
    """A statement in SQLite's dialect, as PostgreSQL (through psycopg's placeholders) runs it."""
    sql = re.sub(r"\bBEGIN\s+IMMEDIATE\b", "BEGIN", _functions(sql), flags=re.I)
    return _outside_literals(sql, _placeholders, escape=True)


def numbered(sql: str) -> str:
    """A statement with `?` placeholders as PostgreSQL's PREPARE takes it: $1, $2, ... in order."""
    count = iter(range(1, 1000))
    return _outside_literals(_functions(sql), lambda code: _PARAM.sub(
        lambda m: f"${next(count)}" if m.group(0) == "?" else m.group(0), code), escape=False)


_TRIGGER = re.compile(
    r"CREATE\s+TRIGGER\s+(\w+)\s+BEFORE\s+(UPDATE|DELETE)\s+ON\s+(\w+)\s*(?:WHEN\s+(.*?))?\s*"
    r"BEGIN\s+SELECT\s+RAISE\(\s*ABORT\s*,\s*('(?:[^']|'')*')\s*\)\s*;\s*END\s*;", re.S | re.I)


def _trigger(m: re.Match) -> str:
    """SQLite's `BEFORE ... WHEN cond BEGIN SELECT RAISE(ABORT, msg); END` as a PL/pgSQL trigger function
    (PostgreSQL allows no subquery in a trigger's WHEN, so the condition moves into the body). The error
    is an integrity violation, as SQLite's RAISE(ABORT) is."""
    name, event, table, condition, message = m.groups()
    condition = re.sub(r"\bIS\s+NOT\s+(?!NULL\b)", "IS DISTINCT FROM ", condition or "true", flags=re.I)
    row = "NEW" if event.upper() == "UPDATE" else "OLD"
    return (f"CREATE FUNCTION {name}_check() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION {message} USING ERRCODE = 'integrity_constraint_violation'; "
            f"END IF; RETURN {row}; END $body$;\n"
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_check();")


_TYPES = (
    (re.compile(r"\bid\s+INTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?", re.I),
     "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bDROP\s+TABLE\s+(\w+)\s*;", re.I), r"DROP TABLE \1 CASCADE;"),
)


def postgres_script(sql: str) -> str:
    """A migration script (no placeholders) in PostgreSQL's dialect."""
    def types(code: str) -> str:
        for pattern, replacement in _TYPES:
            code = pattern.sub(replacement, code)
        return code
    return _outside_literals(_TRIGGER.sub(_trigger, _functions(sql)), types, escape=False)
