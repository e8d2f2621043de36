"""The Dagster skin: the per-table factory, resources, checks, sensors, schedules, Glue Pipes launch."""
