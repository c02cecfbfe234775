"""The service: one tick (tick.py, whose docstring is the table of contents) and the steps it
calls, each taking a small Protocol of what it touches and returning its outcome as data; the
loop around the ticks (daemon.py), and the service's own metrics (telemetry.py)."""
