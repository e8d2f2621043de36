"""Change capture from DynamoDB Streams into the table's Iceberg copy, exactly once (issue 18).

Dagster-free core: stream sources (:mod:`.source`: boto3; :mod:`.scripted`: in memory, for what
the emulator cannot do), shard lineage and positions (:mod:`.positions`), continuity-keeping reads
(:mod:`.reader`), batch reduction and conversion (:mod:`.changes`), and the step that commits
changes together with the position (:mod:`.capture`) to an Iceberg table (:mod:`.iceberg_target`).
"""
