"""Connections to AWS or the local emulator: the local/AWS decision, S3 objects, encrypted writes, the IAM policy."""
