"""The model server's own download of a LoRA by URL (inference/weights.py),
without a server: only http(s), only public addresses (or those in
LIGHTBOX_NETWORK_ALLOWLIST) after DNS and on every redirect, bounded size, and
one error text whatever went wrong on the network."""

import socket

import pytest
from cogserver import FileServer, free_port

from inference import weights


@pytest.fixture
def loras(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_DIR", str(tmp_path / "loras"))
    monkeypatch.setenv("LIGHTBOX_NETWORK_ALLOWLIST", "127.0.0.1")
    served = tmp_path / "served"
    served.mkdir()
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (served / "style.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    return served


@pytest.fixture
def allowed(loras):
    server = FileServer(loras)
    yield server
    server.stop()


@pytest.fixture
def inside(loras):
    server = FileServer(loras, host="127.0.0.2")
    yield server
    server.stop()


def _error(url):
    with pytest.raises(ValueError) as failed:
        weights.lora_file(url)
    return str(failed.value)


def test_an_allowed_host_is_downloaded_once(allowed):
    path = weights.lora_file(f"{allowed.url}/style.safetensors")
    assert path.read_bytes()[:8] and weights.lora_file(f"{allowed.url}/style.safetensors") == path
    assert allowed.counts == {"/style.safetensors": 1}


def test_private_missing_closed_and_redirected_inside_all_read_the_same(allowed, inside, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "inside.example":
            return real("10.0.0.5", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    allowed.redirects["/moved.safetensors"] = f"{inside.url}/style.safetensors"
    errors = {
        _error(url)
        for url in (
            f"{inside.url}/style.safetensors",  # open port, private address
            f"http://127.0.0.2:{free_port()}/style.safetensors",  # closed port
            "http://inside.example/style.safetensors",  # a name that resolves inside
            "http://no-such-host.invalid/style.safetensors",  # a name that does not resolve
            f"http://127.0.0.1:{free_port()}/style.safetensors",  # allowed, but nothing listens
            f"{allowed.url}/missing.safetensors",  # allowed, 404
            f"{allowed.url}/moved.safetensors",  # allowed, redirects inside
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x.safetensors",
        )
    }
    assert errors == {"could not fetch lora"}
    assert inside.counts == {}


def test_the_allowlist_lets_a_lan_host_through(inside, monkeypatch):
    monkeypatch.setenv("LIGHTBOX_NETWORK_ALLOWLIST", "127.0.0.0/8")
    assert weights.lora_file(f"{inside.url}/style.safetensors").is_file()


def test_a_lora_larger_than_the_limit_is_refused(allowed, monkeypatch):
    monkeypatch.setattr(weights, "MAX_LORA_BYTES", 10)
    assert "larger than 10 bytes" in _error(f"{allowed.url}/style.safetensors")


def test_the_schema_declares_lora_as_a_url_so_lightbox_checks_it_too():
    from inference import schema

    assert schema.openapi_schema()["components"]["schemas"]["Input"]["x-lightbox-url-inputs"] == ["lora"]


def test_lightboxs_own_weights_url_is_fetched_from_a_private_address(allowed, monkeypatch):
    # `manage.py serve_model` trusts the site's own /hooks/weights/ prefix, so a
    # fine-tune runs under `make run` (SITE_URL on 127.0.0.1) without opening the
    # allowlist to every URL on that host.
    monkeypatch.delenv("LIGHTBOX_NETWORK_ALLOWLIST")
    assert _error(f"{allowed.url}/style.safetensors") == weights.COULD_NOT_FETCH
    monkeypatch.setenv("LIGHTBOX_WEIGHTS_URL", f"{allowed.url}/")
    assert weights.lora_file(f"{allowed.url}/style.safetensors").read_bytes()[:8]
    # A path that climbs out of the prefix is not Lightbox's weights.
    assert _error(f"{allowed.url}/../style.safetensors") == weights.COULD_NOT_FETCH
    assert not weights.from_lightbox(f"{allowed.url}/%2E%2E/style.safetensors")
