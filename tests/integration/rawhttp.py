"""Raw HTTP/1.1 over a socket, for requests that ``requests`` will not send."""

import json
import socket
import time


def connect(port, timeout=10):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def exchange(port, raw, timeout=10):
    """Send ``raw`` bytes, read until the server closes or a full answer arrives."""
    sock = connect(port, timeout)
    try:
        sock.sendall(raw)
        return read_response(sock)
    finally:
        sock.close()


def read_response(sock):
    """``(status, headers, body bytes)`` of one response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a full head: %r" % data)
        data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _c, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def json_body(body):
    return json.loads(body.decode("utf-8"))


def closed_within(sock, seconds):
    """True when the server closes ``sock`` within ``seconds`` (reads to EOF)."""
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def post(path, body, headers=(), chunked=False):
    """Bytes of a POST request; ``chunked`` sends the body as two chunks."""
    lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += list(headers)
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        parts = [body[:half], body[half:]]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    else:
        lines.append("Content-Length: %d" % len(body))
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
