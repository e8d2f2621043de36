"""Deploying to an AWS account: the CloudFormation template, the preflight check, notifications (no Dagster here)."""
