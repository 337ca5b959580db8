"""Calls that leave the system: the egress guard, mail, webhook signatures and HTTP.

Outbound code knows no task: tasks hand it plain values and it raises the retry classification's
transient or permanent errors.
"""
