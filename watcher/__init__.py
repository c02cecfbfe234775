"""rollback-watcher: watch a fresh deploy, roll back to the last known-good release when it breaks."""

__version__ = "0.1.0"
