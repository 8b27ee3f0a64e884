"""POST /v1/datasets (DESIGN §4 Datasets, §10): uploads of zipped PNG/JPEG images.

Every archive is built here with zipfile and Pillow. Each refusal must be a 4xx problem that
says why, and must leave nothing behind: no new file in data_dir/datasets, an empty
data_dir/tmp, and nothing anywhere else.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from starlette.requests import ClientDisconnect

from ganserve.gan.data import ImageDataset, load_dataset, load_image_folder
from ganserve.service.app import create_app
from ganserve.service.datasets.uploads import (
    STALE_WORK_S,
    UploadLimits,
    ingest_upload,
    plan_layout,
    publish,
    purge_stale_work,
    validate_zip,
)
from ganserve.service.errors import (
    BadRequestError,
    ConflictError,
    InvalidInputError,
    PayloadTooLargeError,
)
from ganserve.settings import Settings

ZIP = {"Content-Type": "application/zip"}


# --- building archives --------------------------------------------------------------------


def image_bytes(
    fmt: str, size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 90), mode: str = "RGB"
) -> bytes:
    image = Image.new(mode, size, color if mode == "RGB" else color[0])
    # a gradient, so resizing and cropping have something to do
    for x in range(size[0]):
        image.putpixel((x, x % size[1]), (x * 7 % 256, 10, 250) if mode == "RGB" else x * 7 % 256)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header declaring width x height RGB pixels, with (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def make_zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_with_info(
    info: zipfile.ZipInfo, data: bytes, extra: dict[str, bytes] | None = None
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
        archive.writestr(info, data)
    return out.getvalue()


def two_class_entries(prefix: str = "") -> dict[str, bytes]:
    return {
        f"{prefix}cats/a.png": image_bytes("PNG", (20, 20)),
        f"{prefix}cats/b.png": image_bytes("PNG", (24, 16), (10, 200, 10)),  # non-square
        f"{prefix}dogs/c.jpg": image_bytes("JPEG", (32, 32), (0, 0, 255)),
        f"{prefix}dogs/d.jpeg": image_bytes("JPEG", (18, 18), (255, 255, 0)),
    }


def two_class_zip() -> bytes:
    entries = two_class_entries()
    # macOS metadata and hidden files are skipped, whatever they hold
    entries["__MACOSX/cats/._a.png"] = b"\x00\x05\x16\x07 resource fork"
    entries["cats/.DS_Store"] = bytes(6148)
    return make_zip(entries)


# --- clients and checks -------------------------------------------------------------------


@pytest.fixture
def limited(settings: Settings) -> Iterator[Any]:
    """Builds a client whose settings have some limits lowered; closed at teardown."""
    clients: list[TestClient] = []

    def build(**update: Any) -> TestClient:
        test_client = TestClient(create_app(settings.model_copy(update=update)))
        clients.append(test_client)
        return test_client.__enter__()

    yield build
    for test_client in clients:
        test_client.__exit__(None, None, None)


def upload(
    client: TestClient, body: bytes, name: str = "pets", headers: dict[str, str] | None = None,
    **params: Any,
) -> Any:  # fmt: skip
    return client.post(
        "/v1/datasets", params={"name": name, **params}, content=body, headers=headers or ZIP
    )


def datasets_files(settings: Settings) -> list[str]:
    folder = settings.data_dir / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_left_nothing(settings: Settings, before: list[str] | None = None) -> None:
    assert datasets_files(settings) == (before or [])
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def assert_refused(response: Any, status: int, *needles: str, field: str | None = "body") -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem.get("field") == field, problem
    for needle in needles:
        assert needle in problem["detail"], problem["detail"]
    return problem


def refuse(
    client: TestClient, settings: Settings, body: bytes, status: int, *needles: str
) -> dict[str, Any]:
    """Upload `body`, expect a refusal naming `needles`, and check nothing was left."""
    problem: dict[str, Any] = assert_refused(upload(client, body), status, *needles)
    assert_left_nothing(settings)
    assert "pets" not in {d["name"] for d in client.get("/v1/datasets").json()["items"]}
    return problem


# --- accepted uploads ---------------------------------------------------------------------


def test_two_class_upload_is_listed_trainable_and_labelled_by_folder(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    response = upload(client, two_class_zip())
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/v1/datasets/pets"
    expected = {
        "name": "pets", "builtin": False, "available": True, "image_size": 16, "channels": 3,
        "classes": ["cats", "dogs"], "num_classes": 2, "size": 4, "hint": None,
    }  # fmt: skip
    assert response.json() == expected
    listed = {d["name"]: d for d in client.get("/v1/datasets").json()["items"]}
    assert listed["pets"] == expected
    assert client.get("/v1/datasets/pets").json() == expected
    assert datasets_files(settings) == ["pets.npz"]
    assert list((settings.data_dir / "tmp").iterdir()) == []

    job = client.post("/v1/jobs", json={"dataset": "pets", "steps": 1, "batch_size": 2})
    assert job.status_code == 202, job.text

    # The stored dataset holds exactly what the folder loader makes of the same files.
    stored = load_dataset("pets", settings.data_dir)
    for path, data in two_class_entries().items():
        (tmp_path / "same" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "same" / path).write_bytes(data)
    reference = load_image_folder(tmp_path / "same", name="pets")
    assert stored.class_names == ("cats", "dogs")
    assert stored.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(stored.images, reference.images)


def test_a_wrapper_folder_is_dropped_and_size_and_channels_apply(
    client: TestClient, settings: Settings
) -> None:
    body = make_zip({"export/": b"", **two_class_entries("export/")})
    response = upload(client, body, name="wrapped", image_size=8, channels=1)
    assert response.status_code == 201, response.text
    info = response.json()
    assert (info["classes"], info["image_size"], info["channels"]) == (["cats", "dogs"], 8, 1)
    assert load_dataset("wrapped", settings.data_dir).images.shape == (4, 1, 8, 8)


def test_loose_images_make_one_class_and_content_decides_the_format(client: TestClient) -> None:
    body = make_zip(
        {"x.jpg": image_bytes("PNG", (12, 12)), "y.png": image_bytes("JPEG", (12, 12))},
        method=zipfile.ZIP_STORED,
    )
    response = upload(client, body, name="loose")
    assert response.status_code == 201, response.text
    assert response.json()["classes"] == ["all"] and response.json()["size"] == 2


def test_multipart_form_upload(client: TestClient) -> None:
    response = client.post(
        "/v1/datasets",
        params={"name": "form"},
        data={"note": "ignored"},
        files={"file": ("pets.zip", two_class_zip(), "application/zip")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["size"] == 4


def test_multipart_without_a_file_field_is_refused(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/v1/datasets", params={"name": "form"}, files={"other": ("x.zip", two_class_zip())}
    )
    assert_refused(response, 422, "'file' field")
    assert_left_nothing(settings)


def test_curl_default_content_type_is_taken_as_the_zip(client: TestClient) -> None:
    # curl --data-binary @x.zip without -H sends application/x-www-form-urlencoded
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert upload(client, two_class_zip(), headers=headers).status_code == 201


# --- zip bombs and limits -----------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_extraction(client: TestClient, settings: Settings) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/a.png", image_bytes("PNG", (16, 16)))
        with archive.open("cats/bomb.png", "w") as member:  # 50 MB of zeros, streamed
            zeros = bytes(1 << 20)
            for _ in range(50):
                member.write(zeros)
    body = out.getvalue()
    assert len(body) < 200_000
    problem = refuse(client, settings, body, 413, "cats/bomb.png", "zip bomb")
    assert problem["limit"] == "max_upload_compression_ratio"


def test_total_uncompressed_size_is_limited(limited: Any, settings: Settings) -> None:
    client = limited(max_upload_uncompressed_bytes=4096, max_upload_compression_ratio=1e9)
    body = make_zip({"a.png": image_bytes("PNG", (16, 16)), "b.bin": os.urandom(5000)})
    problem = refuse(client, settings, body, 413, "4096")
    assert problem["limit"] == "max_upload_uncompressed_bytes"


def test_entry_count_is_limited(limited: Any, settings: Settings) -> None:
    client = limited(max_upload_entries=3)
    body = make_zip({f"cats/{i}.png": image_bytes("PNG", (8, 8)) for i in range(4)})
    assert refuse(client, settings, body, 413, "4 entries")["limit"] == "max_upload_entries"


def test_a_member_lying_about_its_size_is_refused(client: TestClient, settings: Settings) -> None:
    body = bytearray(make_zip({"cats/a.png": os.urandom(100_000)}, method=zipfile.ZIP_STORED))
    # Lower the uncompressed size the central directory declares.
    central = body.index(b"PK\x01\x02")
    struct.pack_into("<I", body, central + 24, 1000)
    refuse(client, settings, bytes(body), 422, "cats/a.png")


def test_an_oversize_body_is_refused_while_streaming(limited: Any, settings: Settings) -> None:
    client = limited(max_upload_bytes=10 * 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: only the streamed count can stop it
        for _ in range(100):
            yield os.urandom(1024)

    response = client.post("/v1/datasets", params={"name": "big"}, content=chunks(), headers=ZIP)
    problem = assert_refused(response, 413, "10240 bytes")
    assert problem["limit"] == "max_upload_bytes"
    assert_left_nothing(settings)


def test_a_content_length_over_the_limit_is_refused_at_once(
    limited: Any, settings: Settings
) -> None:
    client = limited(max_upload_bytes=10 * 1024)
    headers = {**ZIP, "Content-Length": str(100 * 1024)}
    response = upload(client, b"PK\x03\x04", headers=headers)
    assert_refused(response, 413, "Content-Length", "10240")
    assert_left_nothing(settings)


# --- hostile names and entry kinds --------------------------------------------------------


def test_a_parent_dir_member_is_refused_and_nothing_escapes(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    body = make_zip({"cats/a.png": image_bytes("PNG", (8, 8)), "../evil.png": b"x"})
    problem = refuse(client, settings, body, 422, "../evil.png", "'..'")
    assert problem["entry"] == "../evil.png"
    assert not list(tmp_path.rglob("evil.png"))
    assert not (settings.data_dir.parent / "evil.png").exists()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("/etc/evil.png", "absolute path"),
        ("cats/../../evil.png", "'..'"),
        ("cats\\evil.png", "backslash"),
        ("C:/evil.png", "drive letter"),
    ],
)
def test_unsafe_names_are_refused(
    client: TestClient, settings: Settings, name: str, needle: str
) -> None:
    body = zip_with_info(zipfile.ZipInfo(name), image_bytes("PNG", (8, 8)))
    refuse(client, settings, body, 422, needle)


def test_a_nul_in_a_name_is_refused(client: TestClient, settings: Settings) -> None:
    body = make_zip({"cats/aXb.png": image_bytes("PNG", (8, 8))}).replace(b"aXb", b"a\x00b")
    refuse(client, settings, body, 422, "NUL")


@pytest.mark.parametrize(
    ("kind", "needle"),
    [(stat.S_IFLNK, "symbolic link"), (stat.S_IFCHR, "device"), (stat.S_IFIFO, "FIFO")],
)
def test_links_devices_and_fifos_are_refused(
    client: TestClient, settings: Settings, kind: int, needle: str
) -> None:
    info = zipfile.ZipInfo("cats/link.png")
    info.create_system = 3  # Unix
    info.external_attr = (kind | 0o777) << 16
    body = zip_with_info(info, b"/etc/passwd", {"cats/a.png": image_bytes("PNG", (8, 8))})
    refuse(client, settings, body, 422, "cats/link.png", needle)


def test_encrypted_entries_are_refused(client: TestClient, settings: Settings) -> None:
    body = bytearray(make_zip({"cats/a.png": b"ciphertext"}))
    # zipfile writes no encrypted entries: set the flag in the central directory by hand
    central = body.index(b"PK\x01\x02")
    (flags,) = struct.unpack_from("<H", body, central + 8)
    struct.pack_into("<H", body, central + 8, flags | 0x1)
    refuse(client, settings, bytes(body), 422, "encrypted")


def test_duplicate_entries_are_refused(client: TestClient, settings: Settings) -> None:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        archive.writestr("cats/a.png", image_bytes("PNG", (8, 8)))
        archive.writestr("cats/a.png", image_bytes("PNG", (9, 9)))
    refuse(client, settings, out.getvalue(), 422, "twice")


def test_a_name_both_file_and_folder_is_refused(client: TestClient, settings: Settings) -> None:
    body = make_zip({"cats": b"x", "cats/a.png": image_bytes("PNG", (8, 8))})
    refuse(client, settings, body, 422, "both a file and a folder")


# --- images -------------------------------------------------------------------------------


def test_a_png_declaring_30000_squared_is_refused_before_decoding(
    client: TestClient, settings: Settings
) -> None:
    huge = png_declaring(30000, 30000)
    body = make_zip({"cats/a.png": image_bytes("PNG", (8, 8)), "cats/huge.png": huge})
    refuse(client, settings, body, 422, "cats/huge.png", str(4096 * 4096), "IMAGE_PIXELS")


def test_an_image_over_the_configured_pixel_limit_is_refused(
    limited: Any, settings: Settings
) -> None:
    client = limited(max_upload_image_pixels=1000)
    body = make_zip({"cats/a.png": image_bytes("PNG", (8, 8)), "cats/b.png": png_declaring(40, 40)})
    refuse(client, settings, body, 422, "cats/b.png", "40x40 = 1600 pixels", "1000")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cats/notes.txt", b"just some text"),
        ("cats/fake.png", b"\x89PNG\r\n\x1a\n not really"),
        ("cats/anim.gif", b"GIF89a" + bytes(40)),
    ],
)
def test_a_non_image_is_refused_by_name(
    client: TestClient, settings: Settings, name: str, data: bytes
) -> None:
    body = make_zip({"cats/a.png": image_bytes("PNG", (8, 8)), name: data})
    problem = refuse(client, settings, body, 422, name, "not a PNG or JPEG")
    assert problem["entry"] == name


def test_a_corrupt_image_names_the_archive_path_not_the_server_folder(
    client: TestClient, settings: Settings
) -> None:
    broken = image_bytes("PNG", (64, 64))
    broken = broken[:60] + bytes(len(broken) - 60)  # a valid header, then garbage pixels
    body = make_zip({"cats/a.png": image_bytes("PNG", (8, 8)), "cats/broken.png": broken})
    problem = refuse(client, settings, body, 422, "cats/broken.png")
    assert str(settings.data_dir) not in problem["detail"]


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ({"a.png": b"", "cats/b.png": b""}, "mixes loose files"),
        ({"cats/x/a.png": b"", "dogs/b.png": b""}, "nested too deep"),
        ({"__MACOSX/._a.png": b"", ".hidden.png": b"", "empty/": b""}, "holds no images"),
    ],
)
def test_unusable_layouts_are_refused(
    client: TestClient, settings: Settings, entries: dict[str, bytes], needle: str
) -> None:
    entries = {name: data or image_bytes("PNG", (8, 8)) for name, data in entries.items()}
    if "empty/" in entries:
        entries["empty/"] = b""
    refuse(client, settings, make_zip(entries), 422, needle)


@pytest.mark.parametrize("body", [b"", b"not a zip at all", b"PK\x03\x04 truncated"])
def test_a_non_zip_body_is_refused(client: TestClient, settings: Settings, body: bytes) -> None:
    refuse(client, settings, body, 422, "not a zip archive")


# --- names and parameters -----------------------------------------------------------------


def test_a_taken_name_is_a_conflict(client: TestClient, settings: Settings) -> None:
    assert upload(client, two_class_zip()).status_code == 201
    assert_refused(upload(client, two_class_zip()), 409, "already exists", field="name")
    assert_refused(upload(client, two_class_zip(), name="digits"), 409, "built-in", field="name")
    assert_left_nothing(settings, ["pets.npz"])


@pytest.mark.parametrize("name", ["Bad Name", "-x", "a" * 65, "../x", "x/y"])
def test_a_bad_name_is_refused_with_the_pattern(
    client: TestClient, settings: Settings, name: str
) -> None:
    response = upload(client, two_class_zip(), name=name)
    problem = assert_refused(response, 422, "lowercase", field="name")
    assert problem["pattern"] == "^[a-z0-9][a-z0-9._-]{0,63}$"
    assert_left_nothing(settings)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"image_size": 4}, "image_size"), ({"image_size": 65}, "image_size"),
     ({"channels": 2}, "channels")],
)  # fmt: skip
def test_out_of_range_parameters_are_refused(
    client: TestClient, settings: Settings, params: dict[str, Any], field: str
) -> None:
    assert_refused(upload(client, two_class_zip(), **params), 422, field=field)
    assert_left_nothing(settings)


def test_the_name_is_required(client: TestClient) -> None:
    response = client.post("/v1/datasets", content=two_class_zip(), headers=ZIP)
    assert_refused(response, 422, field="name")


def test_the_openapi_document_describes_the_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/zip", "multipart/form-data"}
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"name", "image_size", "channels", "Idempotency-Key"}


# --- auth, get one, delete ----------------------------------------------------------------


def test_keys_protect_uploads_and_deletes(limited: Any, settings: Settings) -> None:
    client = limited(api_keys=["s3cret"])
    assert_refused(upload(client, two_class_zip()), 401, field=None)
    wrong = {**ZIP, "Authorization": "Bearer nope"}
    assert upload(client, two_class_zip(), headers=wrong).status_code == 403
    assert_left_nothing(settings)
    right = {**ZIP, "Authorization": "Bearer s3cret"}
    assert upload(client, two_class_zip(), headers=right).status_code == 201
    assert client.get("/v1/datasets/pets").status_code == 200  # reading needs no key
    assert client.delete("/v1/datasets/pets").status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert client.delete("/v1/datasets/pets", headers=auth).status_code == 204


def test_delete_removes_an_upload_and_refuses_builtins(
    client: TestClient, settings: Settings
) -> None:
    assert upload(client, two_class_zip()).status_code == 201
    assert client.delete("/v1/datasets/pets").status_code == 204
    assert "pets" not in {d["name"] for d in client.get("/v1/datasets").json()["items"]}
    assert client.get("/v1/datasets/pets").status_code == 404
    assert client.delete("/v1/datasets/pets").status_code == 404
    assert datasets_files(settings) == []
    assert client.delete("/v1/datasets/digits").status_code == 409
    assert client.get("/v1/datasets/digits").json()["size"] == 1797
    assert upload(client, two_class_zip()).status_code == 201  # the name is free again


# --- interrupted uploads ------------------------------------------------------------------


def test_a_client_disconnect_mid_body_leaves_nothing(
    client: TestClient, settings: Settings
) -> None:
    body = two_class_zip()
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:100], "more_body": True},
        {"type": "http.request", "body": body[100:200], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/datasets", "raw_path": b"/v1/datasets",
        "query_string": b"name=pets", "root_path": "", "client": ("testclient", 5000),
        "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/zip")],
    }  # fmt: skip

    async def request() -> None:  # straight to the ASGI app, as a server would call it
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(request)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert_left_nothing(settings)


def limits(**update: Any) -> UploadLimits:
    values: dict[str, Any] = {
        "max_bytes": 1 << 20, "max_entries": 100, "max_uncompressed_bytes": 1 << 24,
        "max_compression_ratio": 100.0, "max_image_pixels": 1 << 20,
    }  # fmt: skip
    return UploadLimits(**{**values, **update})


async def chunks_then(error: BaseException) -> AsyncIterator[bytes]:
    yield two_class_zip()[:50]
    raise error


@pytest.mark.parametrize("error", [ClientDisconnect(), RuntimeError("connection reset")])
def test_an_interrupted_body_stream_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    data_dir = tmp_path / "data"
    expected = BadRequestError if isinstance(error, ClientDisconnect) else RuntimeError
    with pytest.raises(expected):
        asyncio.run(
            ingest_upload(chunks_then(error), name="pets", data_dir=data_dir, limits=limits())
        )
    assert list((data_dir / "tmp").iterdir()) == []
    assert not (data_dir / "datasets").exists()


# --- the functions alone ------------------------------------------------------------------


def test_validate_zip_returns_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(two_class_zip())
    names = [info.filename for info in validate_zip(path, limits())]
    assert "cats/a.png" in names and "__MACOSX/cats/._a.png" in names
    with pytest.raises(PayloadTooLargeError):
        validate_zip(path, limits(max_entries=2))
    path.write_bytes(b"nope")
    with pytest.raises(InvalidInputError, match="not a zip archive"):
        validate_zip(path, limits())


def test_plan_layout_strips_only_a_wrapper_over_class_folders(tmp_path: Path) -> None:
    def planned(names: list[str]) -> list[str]:
        path = tmp_path / "x.zip"
        path.write_bytes(make_zip(dict.fromkeys(names, b"x")))
        infos = validate_zip(path, limits())
        return ["/".join(parts) for _, parts in plan_layout(infos)]

    assert planned(["w/a/1.png", "w/b/2.png"]) == ["a/1.png", "b/2.png"]
    assert planned(["a/1.png", "b/2.png"]) == ["a/1.png", "b/2.png"]
    assert planned(["faces/1.png", "faces/2.png"]) == ["faces/1.png", "faces/2.png"]
    assert planned(["1.png", "./2.png", ".x/3.png"]) == ["1.png", "2.png"]


def test_publish_never_replaces_an_existing_dataset(tmp_path: Path) -> None:
    dataset = ImageDataset(
        "pets", torch.zeros((2, 1, 8, 8), dtype=torch.uint8), torch.zeros(2, dtype=torch.int64),
        ("all",),
    )  # fmt: skip
    final = tmp_path / "datasets" / "pets.npz"
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    publish(dataset, tmp_path / "w1", final)
    before = final.read_bytes()
    with pytest.raises(ConflictError):
        publish(dataset, tmp_path / "w2", final)
    assert final.read_bytes() == before
    assert sorted(p.name for p in final.parent.iterdir()) == ["pets.npz"]


def test_stale_work_folders_are_purged(tmp_path: Path) -> None:
    stale, fresh, other = tmp_path / "upload-old", tmp_path / "upload-new", tmp_path / "keep"
    for folder in (stale, fresh, other):
        folder.mkdir()
        (folder / "f").write_bytes(b"x")
    old = time.time() - STALE_WORK_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    purge_stale_work(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "upload-new"]


def test_an_upload_retried_with_its_idempotency_key_gets_the_dataset(client: TestClient) -> None:
    body = two_class_zip()
    key = {"Idempotency-Key": "upload-once", "Content-Type": "application/zip"}
    first = client.post("/v1/datasets", params={"name": "retried"}, content=body, headers=key)
    assert first.status_code == 201, first.text
    again = client.post("/v1/datasets", params={"name": "retried"}, content=body, headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = client.post(
        "/v1/datasets", params={"name": "retried"}, content=body + b"x", headers=key
    )
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    # without the key, the taken name is a conflict as before
    plain = client.post(
        "/v1/datasets", params={"name": "retried"}, content=body,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert plain.status_code == 409
