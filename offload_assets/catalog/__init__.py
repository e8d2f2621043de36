"""The Glue Data Catalog: tables and partitions, Glue types, projection, the latest view, retention, the crawler."""
