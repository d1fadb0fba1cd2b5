"""The web server (lightbox.webserver): it reads a request's body whole before the
view runs, so it refuses one larger than any endpoint takes before reading it."""

import socket

from lightbox.webserver import largest_body


def _status_line(site, head):
    host, port = site.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())
        return sock.makefile("rb").readline().decode()


def test_a_body_larger_than_any_endpoint_takes_is_refused_before_it_is_sent(site):
    head = (
        f"POST /hooks/cog/uploads/token/a.png HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {largest_body() + 1}\r\n\r\n"
    )
    assert _status_line(site, head).startswith("HTTP/1.1 413")


def test_a_chunked_body_is_cut_off_at_the_limit(site):
    # Without a Content-Length the server counts as it reads.
    chunk = b"x" * (1024 * 1024)
    host, port = site.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /hooks/cog/uploads/token/a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(largest_body() // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status = sock.makefile("rb").readline()
    assert status.startswith(b"HTTP/1.1 413")
