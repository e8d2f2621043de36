"""The Glue Data Catalog as an Iceberg catalog (pyiceberg's ``GlueCatalog``), built from an ``AwsConnection``.

One connection description for the whole project: the Glue client is the connection's own (same
endpoint, retries, credentials); the FileIO gets the same endpoint, region and credentials as
pyiceberg properties, plus the table's SSE settings (:mod:`offload_assets.iceberg.file_io`).
Works the same on AWS and on the local emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io import S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_REGION, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN
from pyiceberg.table import Table

from offload_assets.aws.connection import AwsConnection
from offload_assets.iceberg.file_io import FILE_IO_IMPL, sse_properties
from offload_assets.iceberg.schema import iceberg_schema_for

#: Table properties of every table we create: format v2, merge-on-read (changes are new data files
#: plus position delete files, as :func:`offload_assets.iceberg.apply_changes` writes them; Athena's
#: own UPDATE/DELETE/MERGE then write the same way), zstd Parquet.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.delete.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.merge.mode": "merge-on-read",
    "write.parquet.compression-codec": "zstd",
    "write.target-file-size-bytes": str(128 * 1024 * 1024),
}


@dataclass(frozen=True)
class IcebergLocation:
    """Where one Iceberg table lives: its Glue database and name, and its S3 root."""

    database: str
    table: str
    location: str  # s3://bucket/prefix/iceberg/<table>

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.table)


def catalog_properties(conn: AwsConnection, put_kwargs: dict[str, str] | None = None) -> dict[str, str]:
    """pyiceberg properties for ``conn``: FileIO implementation, endpoint, region, credentials, SSE."""
    props: dict[str, str] = {"py-io-impl": FILE_IO_IMPL, **sse_properties(put_kwargs or {})}
    region = conn.region_name or conn.session().region_name
    if region:
        props[S3_REGION] = props["glue.region"] = region
    if conn.endpoint_for("s3"):
        props[S3_ENDPOINT] = conn.endpoint_for("s3")
    if conn.aws_access_key_id:
        props[S3_ACCESS_KEY_ID] = conn.aws_access_key_id
        props[S3_SECRET_ACCESS_KEY] = conn.aws_secret_access_key or ""
        if conn.aws_session_token:
            props[S3_SESSION_TOKEN] = conn.aws_session_token
    elif conn.profile_name:
        frozen = conn.session().get_credentials().get_frozen_credentials()
        props.update({S3_ACCESS_KEY_ID: frozen.access_key, S3_SECRET_ACCESS_KEY: frozen.secret_key})
        if frozen.token:
            props[S3_SESSION_TOKEN] = frozen.token
    return props


def connect_catalog(conn: AwsConnection, put_kwargs: dict[str, str] | None = None, glue: Any = None) -> GlueCatalog:
    """pyiceberg's Glue catalog on ``conn`` (``glue``: an existing Glue client of that connection)."""
    return GlueCatalog("glue", client=glue or conn.client("glue"), **catalog_properties(conn, put_kwargs))


def load_table(catalog: GlueCatalog, where: IcebergLocation) -> Table | None:
    """The Iceberg table at ``where``, or None when Glue has no such table."""
    try:
        return catalog.load_table(where.identifier)
    except NoSuchTableError:
        return None


def create_table(catalog: GlueCatalog, where: IcebergLocation, schema: pa.Schema, key_names: tuple[str, ...]) -> Table:
    """Create the Iceberg v2 table: identifier fields = the DynamoDB key columns, docs from field metadata."""
    catalog.create_namespace_if_not_exists(where.database)
    return catalog.create_table(
        where.identifier,
        schema=iceberg_schema_for(schema, key_names),
        location=where.location,
        properties=TABLE_PROPERTIES,
    )


__all__ = ["TABLE_PROPERTIES", "IcebergLocation", "catalog_properties", "connect_catalog", "create_table", "load_table"]
