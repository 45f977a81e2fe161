"""Everything MQTT: the broker client, the sink, Home Assistant discovery, the fleet view.

paho-mqtt is imported only inside ``broker``, so this package imports without the
``mqtt`` extra.
"""
