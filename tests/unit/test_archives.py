"""The safe unpacker (issue: a zip entry named with backslashes wrote outside the dataset folder).

Every hostile archive is generated here, with varied separators, drive letters, Unicode
look-alikes and nesting; after each refusal nothing may exist outside the destination's
parent, nor a partial folder inside it.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from backbones.data.archives import ArchiveLimits, member_parts, unpack_archive, unpack_dataset
from backbones.errors import BackboneError, DatasetError
from backbones.paths import INODE_BYTES, disk_cost, prune_least_recently_used
from tests.corpus import tiny_files_zip

REPO = Path(__file__).resolve().parents[2]


def make_zip(members: list[tuple[str | zipfile.ZipInfo, bytes]], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return buffer.getvalue()


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under ``root`` (the project tree, minus caches and the venv)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".venv", ".git", ".pytest_cache", "__pycache__", ".ruff_cache")]
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


GOOD = ("cat/1.jpg", b"\xff\xd8 not really a jpeg")

# Names that must never be written where they point. {app} is replaced by this repository's absolute path.
HOSTILE_NAMES = [
    "\\{app}\\dashboard\\views\\training.py",  # the reported attack: backslashes from the root
    "{app}/dashboard/views/training.py",
    "..\\..\\evil.py",
    "cat\\..\\..\\evil.py",
    "cat/../../evil.py",
    "cat/./../../evil.py",
    "C:\\Windows\\evil.py",
    "c:evil.py",
    "D:/evil.py",
    "\\\\server\\share\\evil.py",
    "//server/share/evil.py",
    "\uff0e\uff0e/evil.py",  # fullwidth full stops
    "cat/\uff0e\uff0e\uff0fevil.py",  # fullwidth solidus
    "cat/\u2024\u2024/evil.py",  # one-dot leaders fold to '..'
]


@pytest.mark.parametrize("template", HOSTILE_NAMES)
def test_hostile_member_names_are_refused_and_nothing_is_written(tmp_path, template):
    name = template.replace("{app}", str(REPO).replace("/", "\\") if template.startswith("\\") else str(REPO))
    before = tree_digest(REPO / "dashboard")
    data = make_zip([GOOD, (name, b"import os  # would run on the server")])
    dest = tmp_path / "out" / "dataset"
    with pytest.raises(DatasetError, match="archive refused") as info:
        unpack_archive(data, dest)
    assert "\n" not in str(info.value) and "\x00" not in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []  # no temporary folder
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "out" / "evil.py").exists()
    assert tree_digest(REPO / "dashboard") == before


def test_member_parts_normalises_windows_names():
    assert member_parts("holiday\\cat\\1.jpg") == ("holiday", "cat", "1.jpg")
    assert member_parts("./holiday//cat/1.jpg") == ("holiday", "cat", "1.jpg")
    with pytest.raises(DatasetError, match="nested more than 3"):
        member_parts("a/b/c/d/e.jpg", max_depth=3)


def _special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    "mode, why",
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFCHR | 0o666, "device"),
        (stat.S_IFBLK | 0o666, "device"),
        (stat.S_IFIFO | 0o666, "device"),
    ],
)
def test_links_and_devices_are_refused(tmp_path, mode, why):
    data = make_zip([GOOD, (_special("cat/link.jpg", mode), b"/etc/passwd")])
    with pytest.raises(DatasetError, match=why):
        unpack_archive(data, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_zip_bomb_is_refused_from_the_directory_before_writing(tmp_path):
    data = make_zip([GOOD, ("cat/zeros.jpg", bytes(64 << 20))])
    assert len(data) < 200_000  # 64 MiB of zeros compress ~1000:1
    with pytest.raises(DatasetError, match="expands more than 200:1"):
        unpack_archive(data, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_byte_member_and_depth_limits(tmp_path):
    data = make_zip([(f"c{i % 3}/{i}.jpg", os.urandom(1000)) for i in range(30)], compression=zipfile.ZIP_STORED)
    with pytest.raises(DatasetError, match="30 files, more than the 20 allowed"):
        unpack_archive(data, tmp_path / "a", limits=ArchiveLimits(max_files=20))
    with pytest.raises(DatasetError, match="GiB limit"):
        unpack_archive(data, tmp_path / "b", limits=ArchiveLimits(max_bytes=10_000))
    deep = make_zip([("/".join(["d"] * 40) + "/x.jpg", b"x")])
    with pytest.raises(DatasetError, match="nested more than 32"):
        unpack_archive(deep, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []
    assert unpack_archive(data, tmp_path / "ok", limits=ArchiveLimits(max_files=30)).is_dir()


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKBONES_ARCHIVE_MAX_FILES", "7")
    limits = ArchiveLimits.from_env()
    assert limits.max_files == 7 and limits.max_bytes == ArchiveLimits().max_bytes
    monkeypatch.setenv("BACKBONES_ARCHIVE_MAX_BYTES", "not a number")
    with pytest.raises(BackboneError, match="BACKBONES_ARCHIVE_MAX_BYTES must be a positive number"):
        ArchiveLimits.from_env()


def test_a_crc_error_leaves_nothing(tmp_path):
    payload = b"A" * 5000
    data = bytearray(make_zip([GOOD, ("cat/2.jpg", payload)], compression=zipfile.ZIP_STORED))
    at = bytes(data).index(payload)
    data[at + 100] ^= 0xFF  # corrupt the stored bytes, not the directory
    with pytest.raises(DatasetError, match="broken or encrypted"):
        unpack_archive(bytes(data), tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_names_that_collide_are_refused(tmp_path):
    data = make_zip([("cat/1.jpg", b"a"), ("cat\\1.jpg", b"b")])
    with pytest.raises(DatasetError, match="appears twice"):
        unpack_archive(data, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_not_a_zip(tmp_path):
    for junk in (b"", b"PK\x03\x04 truncated", os.urandom(300)):
        with pytest.raises(DatasetError, match="not a zip archive"):
            unpack_archive(junk, tmp_path / "d")


def test_uploads_are_unpacked_once_and_pruned_least_recently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BACKBONES_UPLOAD_QUOTA_MB", "0.5")  # 512 KiB: room for one of these
    first = make_zip([(f"a/{i}.jpg", os.urandom(100_000)) for i in range(4)], compression=zipfile.ZIP_STORED)
    second = make_zip([(f"b/{i}.jpg", os.urandom(100_000)) for i in range(4)], compression=zipfile.ZIP_STORED)
    one = unpack_dataset(first, label="first.zip")
    assert unpack_dataset(first, label="first.zip") == one  # same bytes: same folder, unpacked once
    two = unpack_dataset(second, label="second.zip")
    assert two.is_dir() and not one.exists()  # the older one went to make room
    datasets = tmp_path / "cache" / "datasets"
    assert [p.name for p in datasets.iterdir()] == [two.name]


def test_prune_keeps_the_newest_and_hidden_entries(tmp_path):
    for i, name in enumerate(["old", "mid", "new", ".unpacking-x"]):
        (tmp_path / name).write_bytes(bytes(1000))
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    each = disk_cost(tmp_path / "old").bytes  # a block and an inode, not 1000 bytes
    removed = prune_least_recently_used(tmp_path, 2 * each, keep={tmp_path / "old"})
    assert sorted(p.name for p in removed) == ["mid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".unpacking-x", "new", "old"]


# ---------------------------------------------------------------- the quota counts blocks and files (issue 21, 9)


def test_disk_cost_counts_blocks_and_inodes_not_bytes(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(200):
        (folder / f"{i}.png").write_bytes(b"x" * 10)
    cost = disk_cost(folder)
    assert cost.files == 201  # the files and the folder: one inode each
    assert cost.bytes >= 201 * INODE_BYTES + 200 * 10
    assert cost.bytes > 20 * 2000  # 2,000 bytes of data; the disk gives up a block per file on ext4, xfs, tmpfs
    assert disk_cost(tmp_path / "missing").files == 0


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BACKBONES_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def test_a_zip_of_many_tiny_files_is_refused_for_its_real_cost(datasets_cache, monkeypatch):
    data = tiny_files_zip(3000)
    assert len(data) < 1_000_000  # the old quota added ~70 bytes per file: 0.2 MB, well under 4 MB
    monkeypatch.setenv("BACKBONES_UPLOAD_QUOTA_MB", "4")
    with pytest.raises(DatasetError, match=r"tiny\.zip: unpacks to 3,003 files and folders, [\d.]+ MiB on disk, more "
                                           r"than the upload quota of 200,000 files and folders, 4\.0 MiB"):
        unpack_dataset(data, label="tiny.zip")
    assert not datasets_cache.exists() or list(datasets_cache.iterdir()) == []  # refused before writing one inode

    monkeypatch.setenv("BACKBONES_UPLOAD_QUOTA_MB", "8192")
    monkeypatch.setenv("BACKBONES_UPLOAD_MAX_FILES", "2000")
    with pytest.raises(DatasetError, match=r"more than the upload quota of 2,000 files and folders"):
        unpack_dataset(data, label="tiny.zip")


@pytest.mark.parametrize(("variable", "value"), [("BACKBONES_UPLOAD_MAX_FILES", "1500"), ("BACKBONES_UPLOAD_QUOTA_MB", "5")],
                         ids=["file-count", "blocks"])
def test_least_recently_used_pruning_counts_the_same_way(datasets_cache, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    first = unpack_dataset(tiny_files_zip(1000, classes=2), label="first.zip")
    second = unpack_dataset(tiny_files_zip(1001, classes=2), label="second.zip")  # each fits, both do not
    assert second.is_dir() and not first.exists()
    assert [p.name for p in datasets_cache.iterdir()] == [second.name]


def test_the_file_quota_setting_is_checked(datasets_cache, monkeypatch):
    monkeypatch.setenv("BACKBONES_UPLOAD_MAX_FILES", "many")
    with pytest.raises(BackboneError, match="BACKBONES_UPLOAD_MAX_FILES must be a positive number"):
        unpack_dataset(tiny_files_zip(3), label="x.zip")
