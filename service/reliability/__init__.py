"""Delivery discipline shared by every task: error classification and retry policy."""
