"""The dashboard pages, one module each; app.py routes to them and each only reads widgets and renders."""
