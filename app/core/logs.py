"""What a model's logs tell besides the text: progress, the safety
checker's verdicts, and which lines are libraries talking to developers.

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

# Python's warnings ("/site-packages/diffusers/x.py:140: FutureWarning: ..."),
# followed by the source line they quote, indented.
PYTHON_WARNING_RE = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
# What diffusers, transformers and friends log to stderr for developers:
# deprecations, ignored config keys, the safety checker turned off by design.
LIBRARY_LINE_RE = re.compile(
    r"^(?:WARNING|Warning)\b[:\s]"
    r"|^\w*Warning: "
    r"|^You have disabled the safety checker for "
    r"|^The config attributes \{.*\} were passed to .* but are not expected"
    r"|^Keyword arguments \{.*\} are not expected by "
    r"|^.* is deprecated and will be removed in version "
    r"|^An error occurred while trying to fetch "
    r"|^Defaulting to unsafe serialization"
)

STEP_RE = re.compile(r"step (\d+)/(\d+)")
NSFW_LINE_RE = re.compile(r"^nsfw_content_detected:\s*(\[.*\])\s*$", re.M)


def progress(logs):
    """(step, total) from the last "step k/N" line of the logs, or None."""
    matches = STEP_RE.findall((logs or "")[-2000:])
    if not matches:
        return None
    step, total = matches[-1]
    return int(step), int(total)


LOSS_RE = re.compile(r"step\s+\d+\s*/\s*\d+\b[^\n]*?\bloss[=:]\s*([-+0-9.eE]+|nan|inf)", re.IGNORECASE)


def last_loss(logs):
    """The loss of the last "step k/N loss=x" line a trainer logged, or None."""
    matches = LOSS_RE.findall((logs or "")[-2000:])
    if not matches:
        return None
    try:
        return float(matches[-1])
    except ValueError:
        return None


def losses(logs):
    """Every (step, loss) a trainer logged, for a training's loss curve."""
    found = []
    for line in (logs or "").splitlines()[-5000:]:
        step = STEP_RE.search(line)
        loss = LOSS_RE.search(line)
        if step and loss:
            try:
                found.append((int(step.group(1)), float(loss.group(1))))
            except ValueError:
                continue
    return found


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


def without_library_warnings(logs):
    """(what a user's logs show, the library warnings taken out of them).
    Users see what the model says about their run (seed, steps, sizes);
    warnings libraries print for developers (deprecations and the like)
    belong in the server's log, not on a card."""
    kept, removed = [], []
    quoting = False
    for line in (logs or "").splitlines(keepends=True):
        if quoting and line[:1] in (" ", "\t"):
            removed.append(line)  # the source line a Python warning quotes
            continue
        quoting = bool(PYTHON_WARNING_RE.match(line))
        if quoting or LIBRARY_LINE_RE.match(line):
            removed.append(line)
        else:
            kept.append(line)
    return "".join(kept), "".join(removed)
