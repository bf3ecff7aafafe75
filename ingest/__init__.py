"""MQTT → PostgreSQL ingest: validate, dedupe, batch COPY, dead-letter what is bad."""
