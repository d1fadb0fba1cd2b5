"""Where weights come from: a local folder, the Hugging Face cache, or the hub."""

import hashlib
import http.client
import ipaddress
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit


class MissingModel(RuntimeError):
    pass


def _patterns(fp16: bool) -> list[str]:
    # Only the diffusers folders, never the single-file checkpoints at a repo's root.
    weights = "*/*.fp16.safetensors" if fp16 else "*/*.safetensors"
    return ["model_index.json", "*/*.json", "*/*.txt", "tokenizer*/*", weights]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def how_to_get(model_id: str) -> str:
    return (
        f"model {model_id!r} is not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub cannot be reached. "
        f"On a machine with internet run `hf download {model_id}` "
        "(or `huggingface-cli download ...`), then copy the cache here or point HF_HOME at it; "
        "or set MODEL_ID to a local diffusers folder."
    )


def model_dir(model_id: str, fp16: bool) -> str:
    """A local folder holding the model, downloading it if the hub is reachable."""
    if not model_id:
        raise MissingModel("MODEL_ID is not set: give a Hugging Face id or a local folder")
    if os.path.isdir(model_id):
        return model_id
    if model_id.startswith((".", "/", "~")) or model_id.count("/") != 1:
        raise MissingModel(f"model folder {model_id!r} does not exist")
    from huggingface_hub import snapshot_download

    for variant_fp16 in (True, False) if fp16 else (False,):
        try:
            folder = snapshot_download(model_id, local_files_only=True, allow_patterns=_patterns(variant_fp16))
            if any(Path(folder).glob("*/*.safetensors")):
                return folder
        except Exception:
            pass
    if _offline():
        raise MissingModel(how_to_get(model_id))
    try:
        return snapshot_download(model_id, allow_patterns=_patterns(fp16))
    except Exception as e:
        raise MissingModel(how_to_get(model_id) + f" ({type(e).__name__}: {e})") from e


def has_fp16_variant(folder: str) -> bool:
    return any(Path(folder).glob("unet/*.fp16.safetensors"))


# LoRA files: a name inside LORA_DIR, or an http(s) URL downloaded once.

LORA_PATTERN = r"^(https?://\S+|[A-Za-z0-9_][A-Za-z0-9_.-]*)$"
MAX_LORA_BYTES = 2 * 1024**3
MAX_REDIRECTS = 5
# What a failed download tells the caller, whatever the reason: telling a name
# that does not resolve from a private address, or an open port from a closed
# one, would map the network this server runs in. The reason goes to the log.
COULD_NOT_FETCH = "could not fetch lora"


def lora_dir() -> Path:
    return Path(os.environ.get("LORA_DIR", "var/loras")).resolve()


def lora_file(ref: str) -> Path:
    if ref.startswith(("http://", "https://")):
        return _download_lora(ref)
    root = lora_dir()
    candidates = [root / ref, root / f"{ref}.safetensors"]
    for path in candidates:
        resolved = path.resolve()
        # A name, not a path: the schema's pattern already refuses slashes;
        # this also refuses symlinks that lead out of LORA_DIR.
        if resolved.parent != root and root not in resolved.parents:
            raise ValueError(f"lora {ref!r} is outside LORA_DIR")
        if resolved.is_file():
            return resolved
    raise ValueError(f"lora {ref!r} not found in LORA_DIR ({root})")


def _download_lora(url: str) -> Path:
    cache = lora_dir() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".safetensors")
    if target.is_file():
        return target
    print(f"downloading lora {url}")
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, MAX_LORA_BYTES, float(os.environ.get("LORA_DOWNLOAD_TIMEOUT", "600")))
    except TooLarge:
        os.unlink(tmp)
        raise ValueError(f"lora {url} is larger than {MAX_LORA_BYTES} bytes") from None
    except (Refused, OSError, http.client.HTTPException, ValueError) as e:
        os.unlink(tmp)
        _log(f"lora {url}: {type(e).__name__}: {e}")
        raise ValueError(COULD_NOT_FETCH) from None
    with open(tmp, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or int.from_bytes(header, "little") > 100_000_000:
        os.unlink(tmp)
        raise ValueError(f"lora {url} is not a .safetensors file")
    os.replace(tmp, target)
    return target


# --- Downloads from users' URLs ------------------------------------------------------
# The same rules as Lightbox's network guard (app/core/netguard.py), written again
# because this server runs in its own environment, maybe where Lightbox cannot
# see: http(s) only; every address a host resolves to must be public unless the
# host or address is in LIGHTBOX_NETWORK_ALLOWLIST ("nas.lan,192.168.1.0/24");
# the connection goes to the address that was checked (no DNS rebinding); every
# redirect is checked the same way; size and time are bounded.


class Refused(Exception):
    pass


class TooLarge(Exception):
    pass


def _log(message: str) -> None:
    # The server's own log: during a prediction sys.stderr is the prediction's
    # logs, which the caller reads.
    print(message, file=sys.__stderr__, flush=True)


def _allowlist() -> tuple[set[str], list]:
    hosts, networks = set(), []
    for entry in os.environ.get("LIGHTBOX_NETWORK_ALLOWLIST", "").lower().split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry)
    return hosts, networks


def _public(address: str, networks) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in networks):
        return True
    return ip.is_global and not ip.is_multicast


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to; Refused unless every one is public or allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as e:
        raise Refused(f"{host} does not resolve ({e})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    hosts, networks = _allowlist()
    if host.lower().rstrip(".") in hosts:
        return addresses
    blocked = [address for address in addresses if not _public(address, networks)]
    if blocked or not addresses:
        raise Refused(f"{host} resolves to a non-public address ({blocked[0] if blocked else 'none'})")
    return addresses


def from_lightbox(url: str) -> bool:
    """A fine-tune's weights served by the Lightbox that runs this server
    (LIGHTBOX_WEIGHTS_URL, set by `manage.py serve_model`: its SITE_URL's
    /hooks/weights/), on a private address as often as not. Lightbox only
    sends such URLs itself: a user's URL inputs pass its network guard
    first. Only that prefix, never a path that climbs out of it."""
    prefix = os.environ.get("LIGHTBOX_WEIGHTS_URL", "")
    return bool(prefix) and url.startswith(prefix) and ".." not in url and "%2e" not in url.lower()


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to `url`'s host that can only reach the addresses checked
    here (or, for Lightbox's own weights URL, those its host resolves to)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url[:100]!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if from_lightbox(url):
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
    else:
        addresses = checked_addresses(parts.hostname, port)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = cls(parts.hostname, port, timeout=timeout)

    def connect(_address, timeout, source_address=None):
        error = None
        for address in addresses:
            try:
                return socket.create_connection((address, port), timeout, source_address)
            except OSError as e:
                error = e
        raise error

    # http.client connects (and the https one then wraps with the host's name,
    # for SNI and the certificate check) through this attribute.
    connection._create_connection = connect
    return connection


def _fetch(url: str, out, max_bytes: int, seconds: float) -> None:
    """Write the body of `url` to `out`, following up to MAX_REDIRECTS redirects,
    each to a checked host; TooLarge past `max_bytes`, Refused past `seconds`."""
    deadline = time.monotonic() + seconds

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Refused(f"took longer than {seconds:.0f} s")
        return min(60.0, remaining)

    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        connection = _connection(url, left())
        try:
            connection.request(
                "GET",
                (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                headers={"User-Agent": "Lightbox-inference/0.1"},
            )
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise Refused(f"{url[:100]} answered {response.status}")
            if int(response.getheader("Content-Length") or 0) > max_bytes:
                raise TooLarge()
            size = 0
            while True:
                left()  # each read waits at most the connection's timeout
                chunk = response.read1(1 << 20)
                if not chunk:
                    return
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge()
                out.write(chunk)
        finally:
            connection.close()
    raise Refused(f"more than {MAX_REDIRECTS} redirects")
