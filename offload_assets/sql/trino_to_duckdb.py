"""Athena's SQL (Trino) run on DuckDB: one query text for both engines.

sqlglot parses Trino and writes DuckDB; this module adds what a dialect mapping cannot know
without the tables' column types, which the local engine has (from the Glue catalog):

* ``a / b`` on two integers is integer division in Trino (``7 / 2 = 3``) but not in DuckDB:
  with the types known, sqlglot writes it as a truncating integer division;
* ``cardinality(x)`` is a list length or a map size, ``length(x)`` a string's characters or a
  binary's bytes, depending on the type of ``x``;
* ``any_match`` / ``all_match`` / ``none_match`` have no DuckDB function of that name;
* ``awsdatacatalog."db"."table"``: Athena's catalog name is dropped (one catalog locally);
* unaliased result columns are named ``_col0``, ``_col1``... as Athena names them.

Known differences left as they are: an array subscript out of bounds (``tags[9]``) is an error
in Trino and NULL in DuckDB; map/array/row values come back as Python lists and dicts locally
but as text from Athena.
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

ATHENA_CATALOG = "awsdatacatalog"
_UNNAMED_COLUMN = re.compile(r"^_col_(\d+)$")


class TranslationError(ValueError):
    """The Trino SQL cannot be parsed, or names something that does not exist locally."""


def parse_trino(sql: str) -> exp.Expression:
    """Exactly one Trino statement, parsed."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except SqlglotError as err:
        raise TranslationError(f"SQL syntax error: {err}") from None
    if len(statements) != 1:
        raise TranslationError(f"expected exactly one SQL statement, got {len(statements)}")
    return statements[0]


def table_references(tree: exp.Expression, default_database: str) -> list[exp.Table]:
    """The catalog tables a query names (not its CTEs, not UNNEST aliases), with database filled in.

    Names are lower-cased (Athena's catalog is case-insensitive) and Athena's catalog prefix is
    dropped; the nodes are updated in place.
    """
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    out = []
    for node in tree.find_all(exp.Table):
        if not node.name or not isinstance(node.this, exp.Identifier):
            continue  # UNNEST(...), table functions
        if not node.db and node.name.lower() in ctes:
            continue
        catalog = node.catalog
        if catalog and catalog.lower() != ATHENA_CATALOG:
            raise TranslationError(f"catalog {catalog!r} is not available locally (only {ATHENA_CATALOG})")
        node.set("catalog", None)
        node.set("db", exp.to_identifier((node.db or default_database).lower(), quoted=True))
        node.set("this", exp.to_identifier(node.name.lower(), quoted=True))
        out.append(node)
    return out


def pop_time_travel(node: exp.Table) -> tuple[str, exp.Expression] | None:
    """``FOR VERSION AS OF x`` / ``FOR TIMESTAMP AS OF x`` of a table reference, removed from it:
    (``"VERSION"`` or ``"TIMESTAMP"``, the expression), or None. The caller renames the node to a
    relation holding that snapshot (DuckDB has no time travel over our files)."""
    version = node.args.get("version")
    if not isinstance(version, exp.Version):
        return None
    kind = str(version.this).upper()
    if kind not in ("VERSION", "TIMESTAMP") or str(version.args.get("kind", "AS OF")).upper() != "AS OF":
        raise TranslationError(
            f"time travel {version.sql(dialect='trino')!r} is not supported (use FOR VERSION AS OF or FOR TIMESTAMP AS OF)"
        )
    node.set("version", None)
    return kind, version.expression


def _is_map(node: exp.Expression) -> bool:
    t = node.type
    return t is not None and t.is_type(exp.DataType.Type.MAP)


_BINARY_TYPES = (exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY, exp.DataType.Type.BLOB)


def _is_binary(node: exp.Expression) -> bool:
    t = node.type
    return t is not None and t.is_type(*_BINARY_TYPES)


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Length) and _is_binary(node.this):
        return exp.Anonymous(this="OCTET_LENGTH", expressions=[node.this])
    if isinstance(node, exp.ArraySize) and _is_map(node.this):
        return exp.Anonymous(this="CARDINALITY", expressions=[node.this])
    if (
        isinstance(node, exp.Anonymous)
        and str(node.this).upper() in ("ANY_MATCH", "ALL_MATCH", "NONE_MATCH")
        and len(node.expressions) == 2
    ):
        array, predicate = node.expressions
        mapped = exp.Anonymous(this="LIST_TRANSFORM", expressions=[array, predicate])
        name = str(node.this).upper()
        if name == "ANY_MATCH":
            return exp.Anonymous(this="LIST_BOOL_OR", expressions=[mapped])
        if name == "ALL_MATCH":
            return exp.Anonymous(this="LIST_BOOL_AND", expressions=[mapped])
        return exp.Not(this=exp.Paren(this=exp.Anonymous(this="LIST_BOOL_OR", expressions=[mapped])))
    return node


def to_duckdb(tree: exp.Expression, schema: dict[str, dict[str, dict[str, str]]] | None = None) -> str:
    """DuckDB SQL for a parsed Trino statement whose tables were passed through :func:`table_references`.

    ``schema`` maps database -> table -> column -> DuckDB type; with it, columns are qualified
    and typed (integer division, ``cardinality`` of maps). A query the qualifier cannot handle
    is translated without types rather than refused.
    """
    typed: exp.Expression | None = None
    if schema:
        try:
            mapping = MappingSchema(schema, dialect="duckdb")
            typed = qualify(
                tree.copy(),
                schema=mapping,
                dialect="trino",
                expand_stars=False,
                validate_qualify_columns=False,
                quote_identifiers=True,
                isolate_tables=False,
            )
            typed = annotate_types(typed, schema=mapping, dialect="trino")
        except (SqlglotError, KeyError, ValueError, TypeError, AttributeError):
            typed = None
    target = typed if typed is not None else _name_unaliased(tree.copy())
    target = target.transform(_rewrite)
    return target.sql(dialect="duckdb")


def _name_unaliased(tree: exp.Expression) -> exp.Expression:
    """Alias unnamed output expressions ``_colN`` (what Athena calls them); columns keep their names."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Select):
        named = []
        for i, e in enumerate(select.expressions):
            if isinstance(e, (exp.Alias, exp.Column, exp.Star)) or (isinstance(e, exp.Dot) and e.output_name):
                named.append(e)
            else:
                named.append(exp.alias_(e, f"_col{i}", quoted=True))
        select.set("expressions", named)
    return tree


def athena_column_name(name: str) -> str:
    """Athena's name for an unaliased output column (``_col0``) instead of sqlglot's (``_col_0``)."""
    m = _UNNAMED_COLUMN.match(name)
    return f"_col{m.group(1)}" if m else name


def duckdb_schema_of(con: Any, database: str, relation: str) -> dict[str, str]:
    """Column -> DuckDB type of a relation registered in ``con``."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [database, relation],
    ).fetchall()
    return {name: type_ for name, type_ in rows}
