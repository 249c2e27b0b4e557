"""``amqplike-bench``: amqplike and RabbitMQ measured side by side with the same scenarios.

Run it as ``amqplike-bench`` (or ``python -m amqplike.bench``); the console entry point
is :func:`amqplike.bench.__main__.main`.  See ``docs/performance.md`` for the
scenarios, the figures and how to read them.
"""
