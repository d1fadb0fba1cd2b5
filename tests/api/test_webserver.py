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


def test_a_page_form_too_large_gets_a_page_that_says_what_to_do(site):
    # A browser without JavaScript posting a huge image to the playground.
    host, port = site.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {largest_body() + 1}\r\n\r\n".encode()
        )
        answer = b""
        while b"</html>" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")

    assert head.startswith("HTTP/1.1 413") and "content-type: text/html" in head.lower()
    assert "That upload is too large" in body and f"at most {largest_body() // 2**20} MB" in body
