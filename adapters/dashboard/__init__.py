"""The operator dashboard: plain HTML/JS/CSS in static/, served at /dashboard and built on the public API."""
