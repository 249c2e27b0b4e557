"""A confirm-mode publisher run as its own process by the crash tests.

Usage: publisher.py URL QUEUE PREFIX COUNT.  Prints ``A <id>`` before each
publish and ``C <id>`` once it is confirmed; exits when done or when the
broker goes away.
"""

from __future__ import annotations

import sys

from amqplike.client import BasicProperties
from amqplike.client.sync import BlockingConnection

PERSISTENT = BasicProperties(delivery_mode=2)


def main() -> int:
    url, queue, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = sys.stdout
    try:
        connection = BlockingConnection(url)
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        for i in range(count):
            message_id = f"{prefix}-{i}"
            out.write(f"A {message_id}\n")
            out.flush()
            channel.basic_publish("", queue, message_id.encode(), properties=PERSISTENT)
            out.write(f"C {message_id}\n")
            out.flush()
        connection.close()
    except Exception as e:  # the broker was killed under us: that is the point
        out.write(f"E {type(e).__name__}\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
