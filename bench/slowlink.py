"""A TCP proxy that behaves like a slow link: fixed one-way delay, shared bandwidth.

This kernel has no sch_netem, so the link is simulated in user space: every
chunk is released ``delay`` seconds after it arrived (RTT = 2 x delay), and
each direction shares one token bucket of ``mbit`` Mbit/s across all
connections, as one network link would.
"""

import asyncio
import threading
import time


class _Direction:
    def __init__(self, bytes_per_s):
        self.bytes_per_s = bytes_per_s
        self.next_free = 0.0

    def schedule(self, ready_at, size):
        """When a chunk of ``size`` bytes that is ready at ``ready_at`` has crossed the link."""
        start = max(ready_at, self.next_free)
        self.next_free = start + size / self.bytes_per_s
        return self.next_free


class SlowLink:
    def __init__(self, upstream_port, delay=0.010, mbit=200.0):
        self.upstream_port = upstream_port
        self.delay = delay
        self.up = _Direction(mbit * 1e6 / 8)
        self.down = _Direction(mbit * 1e6 / 8)
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait()
        self.address = "localhost:%d" % self.port

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer, direction):
        queue = asyncio.Queue()

        async def release():
            while True:
                at, data = await queue.get()
                if data is None:
                    break
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        releaser = asyncio.ensure_future(release())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await queue.put((direction.schedule(time.monotonic() + self.delay, len(data)), data))
        except (ConnectionError, OSError):
            pass
        await queue.put((0, None))
        try:
            await releaser
        except (ConnectionError, OSError):
            pass

    async def _handle(self, client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, up_writer, self.up),
                             self._pipe(up_reader, client_writer, self.down))

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
