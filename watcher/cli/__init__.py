"""The command line: one module per command group; app.py holds the app and `main`."""
