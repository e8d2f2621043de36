"""SQL on the catalog: the dispatcher, Athena, local DuckDB, the Trino to DuckDB translation."""
