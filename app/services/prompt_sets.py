"""Prompt sets: the shipped ones (PartiPrompts, GenEval; copies of their
sources with their licences under app/data/prompt_sets/) and users' own,
pasted as lines or uploaded as CSV (prompt, category)."""

import csv
import io
import json
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from app.core.errors import FieldErrors
from app.models import Prompt, PromptSet

DATA = Path(__file__).resolve().parent.parent / "data" / "prompt_sets"

MAX_PROMPTS = 2000
MAX_PROMPT_CHARS = 1000
MAX_CATEGORY_CHARS = 100
MAX_UPLOAD_BYTES = 1024 * 1024


def _parti():
    with open(DATA / "PartiPrompts.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            yield row["Prompt"], row["Category"], row["Challenge"]


def _geneval():
    with open(DATA / "geneval_evaluation_metadata.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                details = ", ".join(
                    " ".join(
                        str(part) for part in (item.get("count", ""), item.get("color", ""), item["class"]) if part
                    )
                    for item in row.get("include", [])
                )
                yield row["prompt"], row["tag"], details[:100]


SHIPPED = {
    "partiprompts": {
        "name": "PartiPrompts",
        "description": "1,632 prompts in 12 categories, each with the challenge it poses (basic, "
        "complex, fine-grained detail, imagination, perspective, quantity, …).",
        "license": "Apache-2.0",
        "attribution": "Yu et al., “Scaling Autoregressive Models for Content-Rich Text-to-Image Generation”, 2022 "
        "(google-research/parti, PartiPrompts.tsv).",
        "source_url": "https://github.com/google-research/parti",
        "rows": _parti,
    },
    "geneval": {
        "name": "GenEval",
        "description": "553 object-focused prompts in 6 tasks (single object, two objects, counting, colours, "
        "position, colour attribution).",
        "license": "MIT",
        "attribution": "Ghosh et al., “GenEval: An Object-Focused Framework for Evaluating Text-to-Image "
        "Alignment”, 2023 (djghosh13/geneval, prompts/evaluation_metadata.jsonl).",
        "source_url": "https://github.com/djghosh13/geneval",
        "rows": _geneval,
    },
}


def ensure_shipped():
    """Load the shipped sets that are missing; each in one transaction, so a
    set that exists is complete. Cheap when they are there (one query), so
    pages call it: tests flush tables, and a fresh database has them at once."""
    present = set(PromptSet.objects.filter(owner=None, slug__in=SHIPPED).values_list("slug", flat=True))
    for slug, spec in SHIPPED.items():
        if slug in present:
            continue
        try:
            with transaction.atomic():
                fields = {key: value for key, value in spec.items() if key != "rows"}
                prompt_set = PromptSet.objects.create(slug=slug, owner=None, **fields)
                Prompt.objects.bulk_create(
                    Prompt(prompt_set=prompt_set, position=i, text=text, category=category, challenge=challenge)
                    for i, (text, category, challenge) in enumerate(spec["rows"]())
                )
        except IntegrityError:
            pass  # another process loaded it first


class SetError(FieldErrors, ValueError):
    """What is wrong with a user's set."""


def _has_control(text):
    return any(ord(c) < 32 and c not in "\t\r\n" for c in text)


def _printable(text, where):
    if _has_control(text):
        raise SetError({where: ["It contains control characters: send plain text."]})
    return text


def parse_lines(text):
    """One prompt a line; blank lines skipped. [(prompt, "")]."""
    _printable(text, "lines")
    return [(line.strip(), "") for line in text.splitlines() if line.strip()]


def parse_csv(raw):
    """Bytes of a CSV file: prompt[, category] a row, an optional header row
    naming them. [(prompt, category)]."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise SetError({"file": [f"The file is over {MAX_UPLOAD_BYTES // 1024} KB."]})
    if b"\x00" in raw:
        raise SetError({"file": ["This is not a text file: upload a CSV (prompt, category)."]})
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SetError({"file": ["The file is not UTF-8 text: save it as a UTF-8 CSV."]}) from None
    _printable(text, "file")
    rows = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), strict=True), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) > 2:
                raise SetError({"file": [f"Row {number} has {len(row)} columns; a row is: prompt, category."]})
            prompt, category = row[0].strip(), (row[1].strip() if len(row) > 1 else "")
            if number == 1 and prompt.lower() == "prompt" and category.lower() in ("", "category"):
                continue  # the header
            rows.append((prompt, category, number))
    except csv.Error as exc:
        raise SetError({"file": [f"This is not a valid CSV file ({exc})."]}) from None
    for prompt, category, number in rows:
        if not prompt:
            raise SetError({"file": [f"Row {number} has a category but no prompt."]})
    return [(prompt, category) for prompt, category, _ in rows]


def create(owner, name, rows):
    """A user's set from [(prompt, category)]. Raises SetError, saving nothing."""
    name = (name or "").strip()
    errors = {}
    if not name:
        errors["name"] = ["Give the set a name."]
    elif len(name) > 200:
        errors["name"] = ["A name is at most 200 characters."]
    if not rows:
        errors.setdefault("prompts", []).append("The set has no prompts: paste one a line, or upload a CSV.")
    elif len(rows) > MAX_PROMPTS:
        errors.setdefault("prompts", []).append(f"{len(rows)} prompts: a set has at most {MAX_PROMPTS}.")
    for number, (prompt, category) in enumerate(rows, start=1):
        if _has_control(prompt) or _has_control(category):
            errors.setdefault("prompts", []).append(f"Prompt {number} contains control characters.")
            break
        if len(prompt) > MAX_PROMPT_CHARS:
            errors.setdefault("prompts", []).append(
                f"Prompt {number} is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS}."
            )
            break
        if len(category) > MAX_CATEGORY_CHARS:
            errors.setdefault("prompts", []).append(
                f"The category of prompt {number} is over {MAX_CATEGORY_CHARS} characters."
            )
            break
    if errors:
        raise SetError(errors)
    base = slugify(name)[:80] or "prompts"
    with transaction.atomic():
        taken = set(PromptSet.objects.filter(owner=owner, slug__startswith=base).values_list("slug", flat=True))
        slug, n = base, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        prompt_set = PromptSet.objects.create(owner=owner, slug=slug, name=name)
        Prompt.objects.bulk_create(
            Prompt(prompt_set=prompt_set, position=i, text=text, category=category)
            for i, (text, category) in enumerate(rows)
        )
    return prompt_set


def categories(prompt_set):
    """[(category, number of prompts)] in the set's order of first appearance."""
    counts = {}
    for category in prompt_set.prompts.order_by("position").values_list("category", flat=True):
        counts[category] = counts.get(category, 0) + 1
    return list(counts.items())
