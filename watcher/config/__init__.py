"""Reading watcher.yaml and the rule files into frozen dataclasses: the schema (the typed
config), the value checks (FileReader: every problem with FILE:LINE: KEY, collected and raised
once), the rule reader, the loader, the secrets the config names (scrub) and the checks of
this host's paths and ports (hostcheck)."""
