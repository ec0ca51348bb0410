"""The API reference page at /docs: plain HTML/JS/CSS in static/ that renders /openapi.json in the browser."""
