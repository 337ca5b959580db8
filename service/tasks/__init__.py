"""Task modules, one per kind of work; importing this package registers every task."""

from . import examples, exports, invoices, notify, periodic, webhooks

__all__ = ["examples", "exports", "invoices", "notify", "periodic", "webhooks"]
