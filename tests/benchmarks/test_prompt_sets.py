"""The shipped prompt sets and users' own (paste or CSV), with clear errors."""

import io

import pytest
from django.core.management import call_command

from app.models import Prompt, PromptSet
from app.services import prompt_sets

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_shipped_sets_load_once_with_their_counts_and_categories(shipped):
    parti = PromptSet.objects.get(owner=None, slug="partiprompts")
    geneval = PromptSet.objects.get(owner=None, slug="geneval")
    assert parti.prompts.count() == 1632
    assert geneval.prompts.count() == 553
    assert len(prompt_sets.categories(parti)) == 12
    assert dict(prompt_sets.categories(geneval)) == {
        "single_object": 80,
        "two_object": 99,
        "counting": 80,
        "colors": 94,
        "position": 100,
        "color_attr": 100,
    }
    assert parti.prompts.exclude(challenge="").count() == 1632  # every prompt has its challenge
    assert (parti.license, geneval.license) == ("Apache-2.0", "MIT")

    prompt_sets.ensure_shipped()
    out = io.StringIO()
    call_command("load_prompt_sets", stdout=out)
    assert Prompt.objects.count() == 1632 + 553
    assert "PartiPrompts: 1632 prompts (Apache-2.0)" in out.getvalue()


def test_the_licence_files_ship_unchanged_beside_the_data():
    for name in ("PartiPrompts.LICENSE", "geneval.LICENSE", "PartiPrompts.tsv", "geneval_evaluation_metadata.jsonl"):
        assert (prompt_sets.DATA / name).stat().st_size > 0
    assert "Apache License" in (prompt_sets.DATA / "PartiPrompts.LICENSE").read_text()


def test_the_page_shows_each_set_with_its_licence_and_attribution(client):
    response = client.get("/prompt-sets")  # loads them on demand: a flushed database has none
    assert response.status_code == 200
    assert b"PartiPrompts" in response.content and b"1632 prompts" in response.content
    assert b"Apache-2.0" in response.content and b"Yu et al." in response.content
    assert b"MIT" in response.content and b"Ghosh et al." in response.content
    assert b"Log in</a> to add your own prompts" in response.content


def test_pasted_lines_become_a_set(client_alice, alice):
    response = client_alice.post("/prompt-sets", {"name": "My foxes", "lines": "a red fox\n\n  a blue fox  \n"})
    assert response.status_code == 302
    mine = PromptSet.objects.get(owner=alice)
    assert list(mine.prompts.values_list("text", flat=True)) == ["a red fox", "a blue fox"]
    assert "My foxes" in client_alice.get("/prompt-sets").content.decode()


def test_a_csv_upload_becomes_a_set_with_categories(client_alice, alice):
    csv = b'prompt,category\n"a fox, running",animals\na teapot,objects\na cat\n'
    upload = io.BytesIO(csv)
    upload.name = "set.csv"
    assert client_alice.post("/prompt-sets", {"name": "Mixed", "file": upload}).status_code == 302
    rows = list(PromptSet.objects.get(owner=alice).prompts.values_list("text", "category"))
    assert rows == [("a fox, running", "animals"), ("a teapot", "objects"), ("a cat", "")]


@pytest.mark.parametrize(
    ("fields", "content", "message"),
    [
        ({"lines": "  \n \n"}, None, "The set has no prompts"),
        ({"lines": "\n".join(f"p{i}" for i in range(2001))}, None, "2001 prompts: a set has at most 2000"),
        ({"lines": "x" * 1001}, None, "Prompt 1 is 1001 characters long; at most 1000"),
        ({"lines": "bell\x07"}, None, "control characters"),
        ({}, b"a,b,c\n", "Row 1 has 3 columns"),
        ({}, b'"unterminated\n', "not a valid CSV file"),
        ({}, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        ({}, b"\xff\xfe\xfa latin", "not UTF-8"),
        ({}, b",animals\n", "has a category but no prompt"),
        ({"name": ""}, b"a fox\n", "Give the set a name"),
    ],
)
def test_bad_sets_get_a_message_at_their_field_and_save_nothing(client_alice, fields, content, message):
    data = {"name": "Bad", **fields}
    if content is not None:
        upload = io.BytesIO(content)
        upload.name = "set.csv"
        data["file"] = upload
    response = client_alice.post("/prompt-sets", data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert 'class="error"' in response.content.decode()
    assert not PromptSet.objects.exclude(owner=None).exists()


def test_a_visitor_cannot_add_a_set(client, transactional_db):
    response = client.post("/prompt-sets", {"name": "x", "lines": "a fox"})
    assert response.status_code == 302 and "/account/login/" in response["Location"]
    assert not PromptSet.objects.exclude(owner=None).exists()
