"""The web page, the HTTP API and Prometheus metrics, served by the ``http`` sink.

``sink`` (the Sink: keeps the latest frame and status, binds the port),
``server`` (the standard library's threading HTTP server, hardened),
``app`` (the routes), ``live`` (JPEG and prediction messages, made once per
frame), ``auth`` (tokens and users), ``metrics`` (a collector read when
scraped; prometheus_client, the web extra, is imported there only) and
``events`` (the read-only view of the event history), ``teach`` (the
/api/teach routes) and ``training`` (its child process). Assets ship in
``assets/``.
"""
