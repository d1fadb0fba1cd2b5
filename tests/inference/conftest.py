"""Fixtures for the local inference server: tiny random-weight pipelines
served by the real Cog HTTP server, started once per test session."""

import sys

import pytest
from cogserver import ROOT, CogServer, FileServer

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from inference import tiny

    out = tmp_path_factory.mktemp("models")
    sd, sdxl = tiny.write_all(out)
    return {"sd": sd, "sdxl": sdxl}


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory, tiny_models):
    from inference import tiny

    folder = tmp_path_factory.mktemp("loras")
    tiny.write_random_lora(tiny_models["sd"], folder / "tiny-sd-style.safetensors")
    tiny.write_random_lora(tiny_models["sdxl"], folder / "tiny-sdxl-style.safetensors", seed=1)
    (folder / "served").mkdir()
    (folder / "served" / "remote.safetensors").write_bytes((folder / "tiny-sd-style.safetensors").read_bytes())
    return folder


@pytest.fixture(scope="session")
def servers(tmp_path_factory, tiny_models, lora_dir):
    """All servers start together (they import torch in parallel), once."""
    runs = tmp_path_factory.mktemp("cog")
    env = {"LORA_DIR": str(lora_dir)}
    started = {
        "sd": CogServer("tiny-sd", tiny_models["sd"], runs / "sd", env),
        # The SDXL one serves as SDXL Turbo: MODEL_FAMILY overrides the config.
        "sdxl": CogServer("tiny-sdxl", tiny_models["sdxl"], runs / "sdxl", env, family="sdxl-turbo"),
        "offline": CogServer(
            "offline", "stabilityai/sd-turbo", runs / "offline", {"HF_HOME": str(runs / "empty-hf-home")}
        ),
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def sd(servers):
    servers["sd"].wait()
    return servers["sd"]


@pytest.fixture(scope="session")
def sdxl(servers):
    servers["sdxl"].wait()
    return servers["sdxl"]


@pytest.fixture(scope="session")
def file_server(lora_dir):
    server = FileServer(lora_dir / "served")
    yield server
    server.stop()


@pytest.fixture
def inside_file_server(lora_dir):
    """The same files on 127.0.0.2: loopback, and not in the suite's
    LIGHTBOX_NETWORK_ALLOWLIST, which the servers read as Lightbox does."""
    server = FileServer(lora_dir / "served", host="127.0.0.2")
    yield server
    server.stop()
