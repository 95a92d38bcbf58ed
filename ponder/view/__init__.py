"""The trace viewer: reasoning traces drawn in the browser.

page.py builds the self-contained page (assets/: viewer.js, viewer.css and d3-hierarchy, vendored
with its licence); sources.py reads what it draws (trace files, results stores); commands.py is
`ponder view`; report_html.py is `ponder report --html`. The server's kept traces
(`ponder serve --keep-traces N`, ponder/serve/traces.py) use the same page, live.
"""
