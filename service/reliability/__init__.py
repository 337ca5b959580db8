"""Delivery discipline shared by every task: retry policy, idempotency ledger, dead letters.

Tasks are declared with `service.reliability.task.job_task`, which applies all three.
"""
