"""Delivering messages through Apprise, off the decision path: the Notifier (the caller's
side), one lane per target (queue, worker, retries), the wire to Apprise (targets), what finally
failed (undelivered, redelivered across restarts), and the offline check of target URLs."""
