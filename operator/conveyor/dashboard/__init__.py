"""`conveyor dashboard`: a pipeline view in the browser, served on 127.0.0.1 with the user's own
credentials (views: the pure JSON and layout; server: the HTTP server; static/: the page)."""
