"""The web page, the HTTP API and Prometheus metrics, served by the ``http`` sink.

``sink.HttpSink`` keeps the latest frame and status it is handed;
``server`` answers requests from its own threads; ``metrics`` reads the
sink's state when scraped; ``events`` is the read-only view of the event
history the API serves. Only the standard library serves HTTP;
prometheus_client (the ``web`` extra) formats the metrics.
"""
