"""`rollback-watcher demo`: a scripted bad deploy on a sandbox host (run.py), the demo app it
deploys (app.py) and the real processes it starts, a Prometheus and the app (rig.py)."""
