"""The two database aliases, named once.

``default`` holds the write model and the event log; ``read`` holds the read
models and the projectors' checkpoints (``config.routers``).
"""

WRITE_DB = "default"
READ_DB = "read"
