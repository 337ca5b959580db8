"""Logs and metrics: what an operator reads to know what the jobs are doing."""
