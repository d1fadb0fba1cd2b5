"""Helpers for tests through the official clients: small images to upload,
and the Node client (npm `replicate` 1.4.0) run by `node` in a subprocess."""

import io
import json
import os
import re
import subprocess
import tempfile

from PIL import Image

from tests.conftest import ROOT

NODE_MODULES = ROOT / "node_modules"


def png(width=40, height=24, color=(200, 40, 40)):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def image_size(data):
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def run_node(site_url, token, body, timeout=90):
    """Run `body` (JavaScript, inside an async function with `replicate`, a
    client pointed at the live server, and `fs`) and return what it returns,
    as JSON. An ApiError it lets escape comes back as {"error": {...}} with the
    status and the problem JSON the client got."""
    assert (NODE_MODULES / "replicate" / "package.json").exists(), (
        "The Node replicate client is missing: run `npm ci` (package.json's devDependencies)."
    )
    script = f"""
const Replicate = require("replicate");
const fs = require("fs");
const replicate = new Replicate({{auth: process.env.TOKEN, baseUrl: process.env.BASE_URL + "/v1"}});
(async () => {{
{body}
}})().then(
  (result) => process.stdout.write(JSON.stringify({{result: result === undefined ? null : result}})),
  (error) => process.stdout.write(JSON.stringify({{error: {{
    name: error.name, message: error.message, status: error.response ? error.response.status : null,
  }}}})),
);
"""
    with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as handle:
        handle.write(script)
    try:
        completed = subprocess.run(
            ["node", handle.name],
            env={**os.environ, "NODE_PATH": str(NODE_MODULES), "TOKEN": token, "BASE_URL": site_url},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    finally:
        os.unlink(handle.name)
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    if "error" in answer:
        return {"error": {**answer["error"], "problem": _problem_in(answer["error"]["message"])}}
    return answer["result"]


def _problem_in(message):
    """The response body the Node client puts at the end of an ApiError's message."""
    match = re.search(r"failed with status \d+ [^:]*: (\{.*\})\.$", message, re.S)
    return json.loads(match.group(1)) if match else None
