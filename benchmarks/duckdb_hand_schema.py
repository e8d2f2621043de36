"""The strongest comparator: DuckDB given a hand-written schema for the generated Reviews data.

``read_ndjson(records=true, columns=...)`` with the structure of ``generate_reviews.py``'s items
written out by hand, the DynamoDB JSON unwrapped in one SQL pass (numbers to exact decimals and
integers, binary from base64, sets to lists, maps to structs), and ``COPY ... (FORMAT parquet,
COMPRESSION zstd)``. It does the whole job except inferring the schema and checking it: what the
project's converter must match. (DuckDB's struct names are case-insensitive: the 0.1% of items'
``reviewername``, which collides with ``ReviewerName``, cannot be declared and is not read.) :func:`convert_autodetect` is the same unwrap over DuckDB's own
schema detection (``sample_size=-1``).
"""

from __future__ import annotations

import duckdb

S = "STRUCT(S VARCHAR)"
N = "STRUCT(N VARCHAR)"
DIMENSIONS = f"STRUCT(M STRUCT(H {N}, W {N}, Unit {S}))"
ITEM = f"""STRUCT(
    ReviewId {S}, ProductId {S}, CustomerId {S}, Rating STRUCT(N VARCHAR, S VARCHAR), HelpfulVotes {N},
    ReviewTitle {S}, ReviewText {S}, ReviewDate {S}, CreatedAt {N}, Verified STRUCT(BOOL BOOLEAN), Price {N},
    Locale {S}, ReviewerName {S},
    Product STRUCT(M STRUCT(Category {S}, Brand {S}, Dimensions {DIMENSIONS})),
    TotalVotes {N}, LedgerAmount {N}, Tags STRUCT(SS VARCHAR[]), ImageHashes STRUCT(BS VARCHAR[]),
    Thumbnail STRUCT(B VARCHAR), SentimentScores STRUCT(NS VARCHAR[]),
    Comments STRUCT(L STRUCT(M STRUCT("By" {S}, "Text" {S}, "At" {N}))[]),
    History STRUCT(L JSON[]), Moderation STRUCT("NULL" BOOLEAN), Labels STRUCT(M STRUCT(S {S})),
    Attachments STRUCT(L STRUCT(B VARCHAR)[])
)"""

UNWRAP = """
SELECT
    list_transform(i.Attachments.L, lambda x: from_base64(x.B)) AS attachments,
    list_transform(i.Comments.L, lambda c: struct_pack(
        "at" := CAST(c.M."At".N AS BIGINT), "by" := c.M."By".S, "text" := c.M."Text".S)) AS comments,
    CAST(i.CreatedAt.N AS BIGINT) AS createdat,
    i.CustomerId.S AS customerid,
    CAST(i.HelpfulVotes.N AS BIGINT) AS helpfulvotes,
    list_transform(i.History.L, lambda x: CAST(x AS VARCHAR)) AS history,
    list_transform(i.ImageHashes.BS, lambda x: from_base64(x)) AS imagehashes,
    CASE WHEN i.Labels.M IS NOT NULL THEN struct_pack(s := i.Labels.M.S.S) END AS labels,
    CAST(i.LedgerAmount.N AS DECIMAL(38, 18)) AS ledgeramount,
    i.Locale.S AS locale,
    CASE WHEN i.Moderation."NULL" THEN NULL END::VARCHAR AS moderation,
    CAST(i.Price.N AS DECIMAL(38, 2)) AS price,
    CASE WHEN i.Product.M IS NOT NULL THEN struct_pack(
        brand := i.Product.M.Brand.S, category := i.Product.M.Category.S,
        dimensions := struct_pack(h := CAST(i.Product.M.Dimensions.M.H.N AS DECIMAL(38, 1)),
                                  unit := i.Product.M.Dimensions.M.Unit.S,
                                  w := CAST(i.Product.M.Dimensions.M.W.N AS DECIMAL(38, 1)))) END AS product,
    i.ProductId.S AS productid,
    TRY_CAST(coalesce(i.Rating.N, i.Rating.S) AS BIGINT) AS rating,
    i.ReviewDate.S AS reviewdate,
    NULL::VARCHAR AS reviewername,
    i.ReviewerName.S AS reviewername_2,
    i.ReviewId.S AS reviewid,
    i.ReviewText.S AS reviewtext,
    i.ReviewTitle.S AS reviewtitle,
    list_transform(i.SentimentScores.NS, lambda x: CAST(x AS DECIMAL(38, 3))) AS sentimentscores,
    i.Tags.SS AS tags,
    from_base64(i.Thumbnail.B) AS thumbnail,
    CAST(i.TotalVotes.N AS BIGINT) AS totalvotes,
    i.Verified.BOOL AS verified,
    CASE WHEN i.Rating.S IS NOT NULL THEN json_object('Rating', i.Rating) END::VARCHAR AS _rescued_data
FROM (SELECT Item AS i FROM {source})
"""


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _copy(source: str, out_path: str, threads: int) -> None:
    con = duckdb.connect(config={"threads": threads, "preserve_insertion_order": False})
    try:
        con.execute(
            f"COPY ({UNWRAP.format(source=source)}) TO '{out_path}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
        )
    finally:
        con.close()


def convert_hand_schema(files: list[str], out_path: str, threads: int = 2) -> None:
    """Declared schema: ``records=true`` and ``columns=`` (no detection)."""
    columns = "{'Item': '" + " ".join(ITEM.split()).replace("'", "''") + "'}"
    _copy(f"read_ndjson({_sql_list(files)}, records=true, columns={columns}, compression='gzip')", out_path, threads)


def convert_autodetect(files: list[str], out_path: str, threads: int = 2) -> None:
    """DuckDB infers the schema from every line (``sample_size=-1``), then the same unwrap. It
    refuses the case collision (``Duplicate name "reviewername"``) unless ``ignore_errors=true``,
    which then drops those items silently: a speed reference, not a correct converter."""
    _copy(f"read_ndjson({_sql_list(files)}, sample_size=-1, ignore_errors=true, compression='gzip')", out_path, threads)
