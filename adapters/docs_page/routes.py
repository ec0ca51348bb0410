"""GET /docs (the page) and GET /docs/{path} (its script and style sheet): a readable rendering of
GET /openapi.json, built from that document alone in the browser."""

from __future__ import annotations

from inferno.adapters.static_site import StaticSite

# Only this server's files and its /openapi.json; no inline script or style.
_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SITE = StaticSite("inferno.adapters.docs_page", "the docs page", _CONTENT_SECURITY_POLICY)
docs_page = SITE.page
docs_asset = SITE.asset
