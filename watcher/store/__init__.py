"""What the watcher keeps on disk: state.json (rewritten atomically), journal.jsonl (append
only), the request inbox, and the locks (the instance lock, the deploy lock)."""
