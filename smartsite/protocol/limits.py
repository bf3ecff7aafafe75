"""Payload size limits: part of the protocol contract.

Publishers must stay under these; the hub dead-letters anything above them with reason
``oversize`` (keeping the first ``DEAD_LETTER_KEEP_BYTES`` of the payload), and the
production broker refuses anything above ``BROKER_MESSAGE_SIZE_LIMIT`` outright.
"""

MAX_JSON_BYTES = 256 * 1024
"""Largest JSON message (telemetry, event, attendance, alert, status, config)."""

MAX_EVIDENCE_BYTES = 2 * 1024 * 1024
"""Largest evidence JPEG."""

MAX_GALLERY_BYTES = 3 * 1024 * 1024
"""Largest enrolled-face gallery (hub→device, retained): about 2,000 workers of 128 floats."""

MAX_GALLERY_WORKERS = 5000
"""Enrolled workers in one gallery at most."""

MAX_READINGS_PER_MESSAGE = 1000
"""A telemetry batch carries at most this many readings; split larger batches."""

BROKER_MESSAGE_SIZE_LIMIT = 4 * 1024 * 1024
"""``message_size_limit`` configured on the broker: a hard stop above every other limit."""

DEAD_LETTER_KEEP_BYTES = 64 * 1024
"""How much of an oversize payload the dead-letter row keeps."""
