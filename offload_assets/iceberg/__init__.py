"""Apache Iceberg tables in the Glue Data Catalog, kept current by merging changes (issue 17).

Dagster-free core. The entry points other features build on (e.g. DynamoDB Streams capture):

* :func:`connect_catalog` / :func:`load_table`: pyiceberg's Glue catalog from an ``AwsConnection``;
* :func:`apply_changes`: upserts and deletes by primary key, ONE atomic snapshot with custom summary
  properties;
* :func:`current_summary`: the current snapshot's summary (our properties included).
"""

from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, load_table
from offload_assets.iceberg.changes import AppliedChanges, apply_changes, current_summary, key_columns_of

__all__ = [
    "AppliedChanges",
    "IcebergLocation",
    "apply_changes",
    "connect_catalog",
    "current_summary",
    "key_columns_of",
    "load_table",
]
