"""Glue- and Athena-safe column names for DynamoDB attribute names.

Rule (documented in TYPE_MAPPING.md):

1. Unicode is folded to ASCII (NFKD, accents dropped), then lower-cased; every character other than
   ``a-z``, ``0-9`` and ``_`` becomes ``_``. A name that is empty or starts with a digit gets the
   prefix ``c_``. Names are cut to 255 characters (Glue's limit).
2. Collisions (``Author`` and ``author`` both give ``author``; or a clash with a reserved name,
   ``_rescued_data`` or the partition key ``ddb_export_timestamp``)
   are resolved deterministically: an attribute that keeps a column it already had (by the
   ``original_name`` metadata of the existing schema, else by exact name) keeps it; the others are
   served in the order (names that are already safe first, then by code point), and the first gets
   the plain name, the next ones ``_2``, ``_3``, ... (the first free suffix).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_NAME_CHARS = 255
_UNSAFE = re.compile(r"[^a-z0-9_]")


def safe_column_name(attribute: str) -> str:
    """The Glue/Athena-safe form of one attribute name, before collision resolution."""
    folded = unicodedata.normalize("NFKD", attribute).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", folded.lower())
    if not name or name[0].isdigit():
        name = "c_" + name
    return name[:MAX_NAME_CHARS]


def assign_column_names(
    attributes: Iterable[str],
    taken: dict[str, str | None] | None = None,
    reserved: Iterable[str] = (),
) -> dict[str, str]:
    """Column name for every attribute, unique among themselves, ``taken`` and ``reserved``.

    ``taken`` maps existing column names to the attribute they hold (``None`` when unknown, e.g.
    a Glue schema without metadata). An attribute recorded in ``taken`` keeps its column; an
    attribute whose safe name equals an unclaimed existing column of unknown origin claims it
    (exact name first). Everything else gets a fresh name.
    """
    taken = dict(taken or {})
    result: dict[str, str] = {}
    by_original = {orig: col for col, orig in taken.items() if orig is not None}
    pending = []
    for attr in sorted(set(attributes), key=lambda a: (safe_column_name(a) != a, a)):
        if attr in by_original:
            result[attr] = by_original[attr]
        else:
            pending.append(attr)
    unknown = {col for col, orig in taken.items() if orig is None}
    still = []
    for attr in pending:
        base = safe_column_name(attr)
        if base in unknown:
            unknown.discard(base)
            result[attr] = base
        else:
            still.append(attr)
    used = set(taken) | set(reserved) | set(result.values())
    for attr in still:
        base = safe_column_name(attr)
        name = base
        n = 1
        while name in used:
            n += 1
            suffix = f"_{n}"
            name = base[: MAX_NAME_CHARS - len(suffix)] + suffix
        used.add(name)
        result[attr] = name
    return result
