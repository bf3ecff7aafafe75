"""The alert engine: rules as data (:mod:`alerts.rules`, seeded from :mod:`alerts.defaults`,
stored by :mod:`alerts.rule_store`), pure evaluation (:mod:`alerts.evaluate`), the service that
consumes MQTT and keeps state (:mod:`alerts.engine`) and the closed loop of an alert
(:mod:`alerts.lifecycle`)."""
