"""Exports of a DynamoDB table to S3: the partition entry point, layout and manifests, scan, native, incremental, discovery."""
