"""The fleet edge: this host's membership, the verdicts it learns and owes, on etcd. The link
runs its own threads and never blocks a tick; the gateway talks to etcd; the cache holds what
etcd holds as last read; the outbox keeps on disk what this host owes until etcd has it. The
fleet's pure decisions live in watcher.core.fleetmodel."""
