"""TLS clients that start a handshake and never finish it: a ClientHello sent
one byte at a time, as slowly as the attacker likes."""

import socket
import ssl
import time


def client_hello():
    """The bytes of a real TLS ClientHello (from Python's own TLS client)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Trickle:
    """``count`` connections to ``port``, each sent one more byte of a
    ClientHello on every ``step()``; the hello is long enough (300+ bytes) that
    none of them completes while the test runs."""

    def __init__(self, port, count):
        self.hello = client_hello()
        self.sent = 0
        self.socks = []
        for _i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            self.socks.append(sock)
        self.step()

    def step(self):
        """One more byte on every connection still open; how many are still open."""
        byte = self.hello[self.sent % len(self.hello):][:1]
        self.sent += 1
        for sock in self.socks:
            if sock.fileno() < 0:
                continue
            try:
                if _closed(sock):
                    sock.close()
                    continue
                sock.send(byte)
            except OSError:
                sock.close()
        return self.open()

    def open(self):
        return sum(1 for sock in self.socks if sock.fileno() >= 0 and not _closed(sock))

    def run(self, seconds, every=2.0):
        """Trickle for ``seconds``; ``[(elapsed, still open), ...]`` after each step."""
        t0, counts = time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            time.sleep(min(every, max(0.0, seconds - (time.monotonic() - t0))))
            counts.append((time.monotonic() - t0, self.step()))
        return counts

    def close(self):
        for sock in self.socks:
            sock.close()


def _closed(sock):
    """True once the peer closed or reset ``sock`` (non-blocking). Before the
    whole hello is in, a server only ever sends an alert, so bytes are read
    and dropped."""
    while True:
        try:
            if not sock.recv(4096):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True
