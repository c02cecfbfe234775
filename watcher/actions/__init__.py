"""What the CLI's commands do beyond the service: replaying rules over history (backtest), rule
unit tests, `explain`, the online checks, and the fleet's commands (`gate`, `fleet status`).
Each is a function over a config that returns data; watcher.cli prints it."""
