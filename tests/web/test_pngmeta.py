"""The PNG readers (app.core.pngmeta) on files written as each tool writes
them, and on broken and hostile ones: each gives what it says, or
NotReadable with a reason, never anything else."""

import json
import struct
import zlib
from types import SimpleNamespace

import pytest

from app.core import images, pngmeta
from tests.web.pngs import A1111_TEXT, a1111_png, chunk, comfyui_png, png, with_chunks


def test_it_reads_automatic1111s_parameters_chunk():
    found = pngmeta.read_png(a1111_png())
    assert found.source == "a1111"
    assert found.values == {
        "prompt": "a red fox in fresh snow, golden hour,\n(masterpiece:1.2), detailed fur",
        "negative_prompt": "blurry, lowres,\nwatermark",
        "num_inference_steps": 24,
        # "DPM++ 2M" with the newer separate "Schedule type: Karras".
        "scheduler": "KarrasDPM",
        "guidance_scale": 6.5,
        "seed": 1234567890,
        "width": 512,
        "height": 768,
    }
    assert found.model == "tiny-sd"
    labels = dict(found.unmapped)
    assert labels["Model hash"] == "6ce0161689"
    assert labels["Clip skip"] == "2"
    # A quoted value keeps its commas.
    assert labels["Lora hashes"] == "fox: 0a1b2c, snow: 3d4e"


@pytest.mark.parametrize(
    ("sampler", "scheduler"),
    [
        ("Euler a", "K_EULER_ANCESTRAL"),
        ("Euler", "K_EULER"),
        ("DDIM", "DDIM"),
        ("PLMS", "PNDM"),
        ("Heun", "HeunDiscrete"),
        ("DPM++ 2M Karras", "KarrasDPM"),
        ("K_EULER", "K_EULER"),
        ("dpmsolvermultistep", "DPMSolverMultistep"),
    ],
)
def test_samplers_map_to_our_schedulers(sampler, scheduler):
    found = pngmeta.parse_parameters(f"a cat\nSteps: 20, Sampler: {sampler}, Seed: 1")
    assert found.values["scheduler"] == scheduler


def test_a_sampler_without_a_scheduler_is_said_unmapped():
    found = pngmeta.parse_parameters("a cat\nSteps: 20, Sampler: DPM++ SDE, Schedule type: Exponential, Seed: 1")
    assert "scheduler" not in found.values
    assert ("Sampler", "DPM++ SDE (Exponential): no Lightbox scheduler matches") in found.unmapped


def test_a_last_line_with_fewer_than_three_settings_is_prompt_as_a1111_reads_it():
    found = pngmeta.parse_parameters("a cat\nwith a hat: big, Steps: 3")
    assert found.values == {"prompt": "a cat\nwith a hat: big, Steps: 3"}


def test_the_same_text_in_an_itxt_chunk_and_non_latin_text():
    text = "un renard roux, 雪の中\nSteps: 8, Sampler: Euler, Seed: 5, Size: 64x64"
    found = pngmeta.read_png(png(itxt={"parameters": text}))
    assert found.values["prompt"] == "un renard roux, 雪の中"
    assert found.values["width"] == 64


def test_a_compressed_ztxt_chunk_is_read():
    data = with_chunks(chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(A1111_TEXT.encode("latin-1"))))
    assert pngmeta.read_png(data).values["seed"] == 1234567890


def test_it_reads_lightboxs_own_chunks():
    prediction = SimpleNamespace(
        id="p123",
        version_id="v" * 64,
        version=SimpleNamespace(ref="local/tiny-sd:" + "v" * 64),
        input={"prompt": "a fox", "seed": 42, "width": 96, "height": 64, "num_outputs": 2, "scheduler": "DDIM"},
    )
    prediction.version.model = "local/tiny-sd"
    data = images.embed_png_metadata(png(), images.parameters_chunks(prediction))
    found = pngmeta.read_png(data)
    assert found.source == "lightbox"
    assert found.version == "v" * 64
    assert found.values == prediction.input
    # Lightbox's own "parameters" text is A1111's format, read back the same way.
    again = pngmeta.parse_parameters(images.a1111_parameters(prediction.input, prediction.version.ref))
    assert again.values == {"prompt": "a fox", "seed": 42, "width": 96, "height": 64, "scheduler": "DDIM"}
    assert again.model == prediction.version.ref


def test_it_reads_comfyuis_prompt_graph():
    found = pngmeta.read_png(comfyui_png())
    assert found.source == "comfyui"
    assert found.values == {
        "seed": 777,
        "num_inference_steps": 12,
        "guidance_scale": 5.5,
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "text, watermark",
        "scheduler": "K_EULER_ANCESTRAL",
        "width": 640,
        "height": 384,
    }
    assert found.model == "tiny-sd.safetensors"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PNG"),
        (b"GIF89a" + b"\x00" * 100, "not a PNG"),
        ("a string, not bytes", "not a PNG"),
        (png(), "no generation parameters"),
        (png({"parameters": "   "}), "no generation parameters"),
        (png({"lightbox": "{not json", "prompt": "[1, 2]"}), "no generation parameters"),
        (png({"prompt": json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}})}), "no generation parameters"),
    ],
)
def test_files_without_parameters_say_so(data, message):
    with pytest.raises(pngmeta.NotReadable, match=message):
        pngmeta.read_png(data)


def test_a_file_cut_short_keeps_what_came_before_the_cut():
    data = a1111_png()
    assert pngmeta.read_png(data[:-30]).values["seed"] == 1234567890
    with pytest.raises(pngmeta.NotReadable):
        pngmeta.read_png(data[:40])


def test_a_chunk_with_a_wrong_crc_is_skipped():
    data = with_chunks(chunk(b"tEXt", b"parameters\x00a cat\nSteps: 1, Seed: 2, CFG scale: 3", crc=1))
    with pytest.raises(pngmeta.NotReadable, match="no generation parameters"):
        pngmeta.read_png(data)


def test_a_decompression_bomb_in_itxt_stops_at_the_cap():
    # 1 GiB of zeros inflates from about 1 MB; the reader stops at its cap.
    bomb = zlib.compressobj(9)
    compressed = b"".join(bomb.compress(b"\x00" * (1 << 24)) for _ in range(64)) + bomb.flush()
    data = with_chunks(chunk(b"iTXt", b"parameters\x00\x01\x00\x00\x00" + compressed))
    with pytest.raises(pngmeta.NotReadable, match="no generation parameters"):
        pngmeta.read_png(data)


def test_a_huge_declared_length_or_endless_chunks_end_quietly():
    huge = struct.pack(">I", 0xFFFFFFF0) + b"tEXt" + b"parameters\x00x"
    with pytest.raises(pngmeta.NotReadable):
        pngmeta.read_png(with_chunks(huge))
    many = with_chunks(*[chunk(b"tEXt", b"k\x00v")] * (pngmeta.MAX_CHUNKS + 10))
    with pytest.raises(pngmeta.NotReadable):
        pngmeta.read_png(many)


@pytest.mark.parametrize(
    "text",
    ["", "   \n  ", "Steps: x, Sampler: , CFG scale: nan-ish"],
)
def test_text_with_nothing_to_restore_says_so(text):
    with pytest.raises(pngmeta.NotReadable):
        pngmeta.parse_parameters(text)


def test_absurd_numbers_are_not_taken():
    found = pngmeta.parse_parameters("a cat\nSteps: 99999999999999999999, CFG scale: nan, Seed: 1e400, Size: 9x9")
    assert found.values == {"prompt": "a cat", "width": 9, "height": 9}
    assert {label for label, _ in found.unmapped} == {"Steps", "CFG scale", "Seed"}


def test_a_long_pasted_line_and_deeply_nested_json_are_read_in_one_pass():
    # A1111's own regex takes minutes on this line (each start scans to the end).
    found = pngmeta.parse_parameters("a fox\n" + "ab cd " * 10_000 + "\nSteps: 3, Seed: 4, CFG scale: 5")
    assert found.values["seed"] == 4 and found.values["prompt"].startswith("a fox\nab cd")
    nested = png(
        {"lightbox": "[" * 100_000, "prompt": "{" * 100_000, "parameters": "a fox\nSteps: 1, Seed: 2, Size: 8x8"}
    )
    assert pngmeta.read_png(nested).source == "a1111"


def test_quoted_values_keep_commas_and_escapes():
    found = pngmeta.parse_parameters('a fox\nSteps: 1, Seed: 2, Notes: "a, \\"b\\", c", Size: 8x8')
    assert dict(found.unmapped)["Notes"] == 'a, "b", c'
    assert found.values["width"] == 8
