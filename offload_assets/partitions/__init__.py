"""Where a table's daily partitions begin (``partitions_start``) when the tables file does not say."""
