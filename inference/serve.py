"""Start a Cog HTTP server for one model.

    python -m inference.serve --model var/models/tiny-sd --port 5101 \\
        [--family sd15] [--upload-url http://127.0.0.1:8000/uploads/] [--host 127.0.0.1]

Writes the input schema for this model's family into the server's own working
directory (var/cog/<port>/.cog/openapi_schema.json: the Cog server reads it
relative to its working directory, and each family has its own defaults),
then execs `python -m cog.server.http` there. WEBHOOK_AUTH_TOKEN and the
LIGHTBOX_* speed switches pass through the environment.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        "--model-dir",
        "--model-id",
        dest="model",
        required=True,
        help="a diffusers folder or a Hugging Face id",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5100)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--family", help="sd15, sd21, sdxl, sd-turbo or sdxl-turbo (default: from the config)")
    parser.add_argument("--upload-url", help="PUT outputs here instead of returning data: URIs")
    parser.add_argument("--run-dir", help="the server's working directory (default var/cog/<port>)")
    parser.add_argument("--lora-dir", help="folder of LoRA files (default $LORA_DIR or var/loras)")
    parser.add_argument(
        "--train", action="store_true", help="serve the trainer (inference/train.py:train) in Cog's train mode"
    )
    args = parser.parse_args(argv)

    model = args.model
    if os.path.isdir(model):
        model = str(Path(model).resolve())
    env = os.environ
    env["MODEL_ID"] = model
    if args.family:
        env["MODEL_FAMILY"] = args.family
    env["PORT"] = str(args.port)
    env["LORA_DIR"] = str(Path(args.lora_dir or env.get("LORA_DIR", "var/loras")).resolve())
    run_dir = Path(args.run_dir or f"var/cog/{args.port}").resolve()

    sys.path.insert(0, str(ROOT))
    from inference import schema

    if not args.train:
        schema.write(run_dir / ".cog" / "openapi_schema.json")

    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["COG_PREDICT_TYPE_STUB"] = f"{ROOT / 'inference' / 'predict.py'}:Predictor"
    # The worker subprocess is started as plain `python`: it must be this one.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "cog.server.http", "--host", args.host]
    if args.train:
        # Its own working directory: the predictor's schema file must not validate training input.
        run_dir = run_dir.with_name(run_dir.name + "-train")
        run_dir.mkdir(parents=True, exist_ok=True)
        env["COG_TRAIN_TYPE_STUB"] = f"{ROOT / 'inference' / 'train.py'}:train"
        command += ["--x-mode", "train"]
    if args.upload_url:
        command += ["--upload-url", args.upload_url]
    os.chdir(run_dir)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
