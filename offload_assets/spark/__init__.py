"""Conversion on Spark: the same converter core, distributed over the export's data files.

:mod:`offload_assets.spark.spark_conversion` holds the two-pass Spark conversion (statistics,
then data, both through ``mapInArrow``) and imports pyspark only when it runs;
``glue_convert_job.py`` is the job script AWS Glue runs (it ships in the package and the project
uploads it to S3). Nothing here imports Dagster: the Dagster side is :mod:`offload_assets.defs.glue_pipes`.
"""
