"""Where rules get their numbers: Prometheus (instant and range queries, its clock and scrape
interval), HTTP health probes, and counters this host keeps without an exporter. Every failure
to read is a SourceError with a short reason; nothing here decides anything."""
