"""The run machinery's file layer: one set of file operations for local disks and ``gs://``.

Manifests, markers, reports, publishing, the run folder's lock, model
versions and ``models/CURRENT`` read and write through here (the Beam jobs'
own data goes through Beam's sinks, TensorFlow's through ``tf.io.gfile``).
Local paths use the OS; ``gs://`` paths use the Cloud Storage client
(``google-cloud-storage``, which Beam's ``gcp`` extra installs), which talks
to an emulator when ``STORAGE_EMULATOR_HOST`` is set, so the tests run every
operation here against a real Cloud Storage API. Other schemes are refused.

Why not Beam's ``FileSystems`` for ``gs://``: it looks for credentials with
retries (about 20 s per process where there are none) and renames and
deletes several objects with Cloud Storage's batch API, which no emulator
serves.

What each write guarantees: :func:`write` makes a file appear whole or not
at all (a local temporary file renamed over it; an object store's upload is
atomic); :func:`create_new` fails when the file exists (a local hard link;
``ifGenerationMatch=0`` on Cloud Storage); :func:`replace` overwrites a file
only if it is still the version read (``ifGenerationMatch=<generation>``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import os
import re
import shutil
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

GCS = "gs://"
# Objects copied or deleted at once on Cloud Storage (each is one request).
_GCS_THREADS = 8
_WILDCARDS = re.compile(r"[*?\[]")
# Bytes read at a time to checksum a local file.
_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One file: its full path, size in bytes and modification time (unix seconds).

    ``crc32c`` is the object's checksum as Cloud Storage lists it (base64 of
    the big-endian CRC32C); None on a local disk, where :func:`checksum`
    computes it.
    """

    path: str
    size: int
    mtime: float
    crc32c: Optional[str] = None


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local disk (atomic renames and links)."""
    return "://" not in path


def _split(path: str) -> Tuple[str, str]:
    """(bucket, object name) of a ``gs://`` path; refuses any other scheme."""
    if not path.startswith(GCS):
        raise ValueError(f"{path}: run folders and their inputs must be local paths or "
                         f"{GCS}bucket/... paths")
    bucket, _, name = path[len(GCS):].partition("/")
    return bucket, name


@functools.lru_cache(maxsize=4)
def _client_for(emulator: Optional[str]):
    from google.cloud import storage

    # project=None: object operations need none, so none is looked up.
    return storage.Client(project=None)


def _client():
    # Keyed by the emulator's address: a test that starts one gets a client for it.
    return _client_for(os.environ.get("STORAGE_EMULATOR_HOST"))


def _blob(path: str):
    bucket, name = _split(path)
    return _client().bucket(bucket).blob(name)


def _errors():
    from google.api_core import exceptions

    return exceptions


def _retry():
    """Retries for a whole-object upload: writing the same bytes twice is harmless."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


def _each(function: Callable[[Any], Any], items: Sequence[Any], remote: bool) -> None:
    """Calls ``function`` on every item: in threads on an object store, where each is a request."""
    if not remote or len(items) < 2:
        for item in items:
            function(item)
        return
    with concurrent.futures.ThreadPoolExecutor(min(_GCS_THREADS, len(items))) as pool:
        list(pool.map(function, items))


def exists(path: str) -> bool:
    """Whether ``path`` is a file, or a folder (on an object store: a prefix) with anything in it."""
    if is_local(path):
        return os.path.exists(path)
    bucket, name = _split(path)
    if name and _blob(path).exists():
        return True
    prefix = name.rstrip("/") + "/" if name else ""
    return any(True for _ in _client().list_blobs(bucket, prefix=prefix, max_results=1))


def read(path: str) -> Optional[bytes]:
    """The bytes of the file ``path``, or None when there is none."""
    if is_local(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            return None
    try:
        return _blob(path).download_as_bytes()
    except _errors().NotFound:
        return None


def write(path: str, data: bytes, mime: str = "application/octet-stream") -> None:
    """Writes the file ``path`` whole: a reader sees the previous file or this one, never part."""
    if not is_local(path):
        _blob(path).upload_from_string(data, content_type=mime, retry=_retry())
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _local_version(stat: os.stat_result, data: bytes) -> Tuple[int, int, str]:
    # The content too: a new file may get a freed inode within one clock tick.
    return stat.st_ino, stat.st_mtime_ns, hashlib.sha256(data).hexdigest()


def read_version(path: str) -> Optional[Tuple[bytes, Any]]:
    """(bytes, version) of the file ``path``, or None; the version is what :func:`replace` checks.

    The version is the object's generation on Cloud Storage and the file's
    inode, modification time and content digest on a local disk.
    """
    if is_local(path):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        data = read(path)
        return None if data is None else (data, _local_version(stat, data))
    blob = _blob(path)
    try:
        data = blob.download_as_bytes()
    except _errors().NotFound:
        return None
    return data, blob.generation


def create_new(path: str, data: bytes) -> Any:
    """Creates the file ``path`` holding ``data``, whole, only if there is none; its version.

    Raises:
        FileExistsError: the file exists (another process created it first).
    """
    if not is_local(path):
        blob = _blob(path)
        try:
            blob.upload_from_string(data, content_type="application/json",
                                    if_generation_match=0)
        except _errors().PreconditionFailed:
            raise FileExistsError(f"{path} exists") from None
        return blob.generation
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    private = f"{path}.{os.getpid()}"
    with open(private, "wb") as f:
        f.write(data)
    try:
        os.link(private, path)  # fails when ``path`` exists, as O_EXCL would
    finally:
        os.remove(private)
    return _local_version(os.stat(path), data)


def replace(path: str, data: bytes, version: Any) -> Any:
    """Overwrites ``path`` with ``data`` only if it is still at ``version``; the new version.

    On Cloud Storage one conditional upload decides it (exactly one of several
    processes replacing the same version wins). On a local disk the check and
    the replacement are two steps: the file is removed, then created afresh.

    Raises:
        FileExistsError: ``path`` changed since ``version`` was read.
    """
    if not is_local(path):
        blob = _blob(path)
        try:
            blob.upload_from_string(data, content_type="application/json",
                                    if_generation_match=version)
        except (_errors().PreconditionFailed, _errors().NotFound):
            raise FileExistsError(f"{path} changed since it was read") from None
        return blob.generation
    found = read_version(path)
    if found is None or found[1] != version:
        raise FileExistsError(f"{path} changed since it was read")
    os.remove(path)
    return create_new(path, data)


def delete_version(path: str, version: Any) -> None:
    """Deletes ``path`` if it is still at ``version`` (Cloud Storage: ``ifGenerationMatch``)."""
    if not is_local(path):
        try:
            _blob(path).delete(if_generation_match=version)
        except (_errors().PreconditionFailed, _errors().NotFound):
            pass  # taken over, or gone: not ours to delete
        return
    found = read_version(path)
    if found is not None and found[1] == version:
        os.remove(path)


def _pattern(name: str) -> "re.Pattern[str]":
    """A glob over object names: ``*`` and ``?`` stay within one folder, ``**`` crosses them."""
    out, i = [], 0
    while i < len(name):
        if name.startswith("**", i):
            out.append(".*")
            i += 2
        elif name[i] == "*":
            out.append("[^/]*")
            i += 1
        elif name[i] == "?":
            out.append("[^/]")
            i += 1
        elif name[i] == "[" and "]" in name[i + 1:]:
            end = name.index("]", i + 1)
            out.append(name[i:end + 1])
            i = end + 1
        else:
            out.append(re.escape(name[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _local_files(path: str) -> List[str]:
    found = []
    for match in ([path] if os.path.exists(path) else glob.glob(path, recursive=True)):
        if os.path.isdir(match):
            for root, _, names in os.walk(match, followlinks=True):
                found += [os.path.join(root, n) for n in names]
        elif os.path.isfile(match):
            found.append(match)
    return found


def listing(path: str) -> List[FileInfo]:
    """Every file ``path`` names, sorted: a file, a folder (all files under it) or a glob."""
    if is_local(path):
        infos = []
        for name in _local_files(path):
            stat = os.stat(name)
            infos.append(FileInfo(name, stat.st_size, stat.st_mtime))
        return sorted(infos, key=lambda i: i.path)
    bucket, name = _split(path)
    client = _client()
    wildcard = _WILDCARDS.search(name)
    if wildcard:
        matcher = _pattern(name)
        blobs = [b for b in client.list_blobs(bucket, prefix=name[:wildcard.start()])
                 if matcher.match(b.name)]
    else:
        exact = client.bucket(bucket).get_blob(name) if name else None
        blobs = [exact] if exact is not None else list(
            client.list_blobs(bucket, prefix=name.rstrip("/") + "/" if name else ""))
    return sorted((FileInfo(f"{GCS}{bucket}/{b.name}", b.size, b.updated.timestamp(),
                            b.crc32c) for b in blobs), key=lambda i: i.path)


def checksum(info: FileInfo) -> str:
    """The CRC32C of a listed file, as Cloud Storage writes it (base64, big-endian).

    Free on Cloud Storage (it is in the listing); a local file is read once.
    The same value on both, so a folder copied between them still matches.

    Raises:
        OSError: the local file cannot be read.
    """
    if info.crc32c is not None:
        return info.crc32c
    import google_crc32c

    crc = google_crc32c.Checksum()
    with open(info.path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            crc.update(chunk)
    return base64.b64encode(crc.digest()).decode("ascii")


def delete(paths: Iterable[str]) -> None:
    """Deletes each path: a file, or a folder with everything under it; absent ones are skipped."""
    for path in paths:
        if is_local(path):
            if os.path.islink(path) or os.path.isfile(path):
                os.remove(path)
            elif os.path.isdir(path):
                shutil.rmtree(path)
            continue
        doomed = [i.path for i in listing(path)]
        _each(_delete_object, doomed, remote=True)


def _delete_object(path: str) -> None:
    try:
        _blob(path).delete()
    except _errors().NotFound:
        pass  # deleted meanwhile: what was wanted


def copy(source: str, destination: str) -> None:
    """Copies one file, between any two of a local disk and Cloud Storage."""
    if is_local(source) and is_local(destination):
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        shutil.copyfile(source, destination)
    elif is_local(source):
        _blob(destination).upload_from_filename(source, retry=_retry())
    elif is_local(destination):
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        _blob(source).download_to_filename(destination)
    else:
        # Rewritten on the server, in as many calls as it takes for a large object.
        target, origin = _blob(destination), _blob(source)
        token, _, _ = target.rewrite(origin)
        while token is not None:
            token, _, _ = target.rewrite(origin, token=token)


def relative_files(folder: str) -> List[str]:
    """The paths of the files under ``folder``, relative to it, sorted."""
    prefix = folder.rstrip("/") + "/"
    return [i.path[len(prefix):] for i in listing(folder) if i.path.startswith(prefix)]


def copy_tree(source: str, destination: str) -> None:
    """Copies the folder ``source`` to ``destination`` (created, or added to)."""
    if is_local(source) and is_local(destination):
        shutil.copytree(source, destination, dirs_exist_ok=True)  # empty folders too
        return
    copy_files(source, destination, relative_files(source))


def copy_files(source: str, destination: str, names: Sequence[str]) -> None:
    """Copies the files ``names`` (relative paths) from the folder ``source`` to ``destination``."""
    _each(lambda n: copy(os.path.join(source, n), os.path.join(destination, n)), names,
          remote=not (is_local(source) and is_local(destination)))


def move_tree(source: str, destination: str) -> None:
    """Moves a folder: one rename on a local disk; a copy, then a delete, on an object store."""
    if is_local(source) and is_local(destination):
        os.rename(source, destination)
        return
    copy_tree(source, destination)
    delete([source])
