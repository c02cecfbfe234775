"""The ground floor: what every other folder uses and that knows nothing of rules, releases or
the service. Errors, durations, the one number formatter, the one atomic file writer, the one
place that runs commands, YAML with line numbers, the watcher's two clocks, log lines for
journald, sd_notify and the redaction of secrets in URLs. Imports nothing else of watcher."""
