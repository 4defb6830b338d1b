"""RabbitMQ messaging on aio-pika, one module per job.

- ``topology``: exchanges, queue names and ``declare_topology`` (retry and dead queues).
- ``publisher``: ``Publisher`` (persistent, mandatory, confirmed) and ``UnroutableError``.
- ``handlers``: ``EventHandlers``, the handlers a service registers by event model class.
- ``consumer``: ``Consumer`` (validates once, acks after the effect, retries transient
  failures, dead-letters the rest) and ``run_until_cancelled``.
- ``routing``: the relays' memory of events whose consumers have not declared a queue yet.

Transient vs permanent failures (``TransientError``, ``PermanentError``, ``is_transient``) are
``common.failures``: HTTP answers the same list with 503.
"""
