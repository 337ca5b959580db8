"""What runs beside the tasks in a worker: in-flight tracking for autoscaling, the heartbeat,
and the probe that reads it.

Imports nothing at package level, so `python -m service.worker.probes` starts in milliseconds.
"""
