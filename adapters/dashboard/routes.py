"""GET /dashboard (the page) and GET /dashboard/{path} (its scripts, styles and vendored uPlot).

They make no core call, so they need no credentials; everything the page shows comes from the public REST API
and /ws, with the API key the operator types in.
"""

from __future__ import annotations

from inferno.adapters.static_site import StaticSite

# Nothing is loaded from another origin (no CDN); REST calls and the WebSocket go back to this server.
# uPlot sizes its elements through inline styles.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SITE = StaticSite("inferno.adapters.dashboard", "the dashboard", _CONTENT_SECURITY_POLICY)
dashboard_page = SITE.page
dashboard_asset = SITE.asset
