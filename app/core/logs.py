"""What a model's logs tell besides the text: progress, and the safety
checker's verdicts.

Progress is diffusers' "step k/N". The local checker's verdicts: a Cog
prediction's output is a plain list of URLs, with no room for flags, so a
predictor reports what its safety checker found in its logs, with one line,
after the images are made:

    nsfw_content_detected: [false, true]

a JSON list of booleans, one per output in order (diffusers' own name for the
checker's result). The last such line counts. Outputs flagged true are stored
rated nsfw, with a blurred thumbnail.
"""

import re

from app.core import payloads

STEP_RE = re.compile(r"step (\d+)/(\d+)")
NSFW_LINE_RE = re.compile(r"^nsfw_content_detected:\s*(\[.*\])\s*$", re.M)


def progress(logs):
    """(step, total) from the last "step k/N" line of the logs, or None."""
    matches = STEP_RE.findall((logs or "")[-2000:])
    if not matches:
        return None
    step, total = matches[-1]
    return int(step), int(total)


def nsfw_flags(logs):
    """The last safety checker verdict in a prediction's logs: a list of bools
    (one per output), or [] when the predictor reported none."""
    matches = NSFW_LINE_RE.findall(logs or "")
    if not matches:
        return []
    try:
        flags = payloads.loads(matches[-1])
    except ValueError:
        return []
    return [bool(flag) for flag in flags] if isinstance(flags, list) else []
