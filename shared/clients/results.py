"""A results bucket in OSS (oss2), errors as ``CloudCallError``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import TRANSIENT_CODES, CloudCallError
from shared.parallel import STORE_POOL_SIZE, WRITES_AT_ONCE
from shared.retry import ATTEMPTS, retrying

if TYPE_CHECKING:
    from oss2 import Bucket

    from shared.clients.oss_writes import Writes


class Results:
    """A results bucket (the deployment's, unless a request's ``Output`` names another)."""

    def __init__(self, settings: Settings, bucket_name: str = "") -> None:
        self._settings = settings
        self.name = bucket_name or settings.results_bucket
        self._bucket: Bucket | None = None
        self._others: dict[str, Results] = {}

    def named(self, bucket_name: str) -> Results:
        if not bucket_name or bucket_name == self.name:
            return self
        if bucket_name not in self._others:
            self._others[bucket_name] = Results(self._settings, bucket_name)
        return self._others[bucket_name]

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            import oss2

            _reuse_crc_tables()
            creds = self._settings.credentials
            from shared.clients.oss_signing import LeanAuthV4
            from shared.clients.oss_transport import LeanSession

            # oss2's StsAuth / AuthV4 (V4 signing) for less CPU per call (oss_signing)
            auth = LeanAuthV4(creds.access_key_id, creds.access_key_secret,
                              creds.security_token or "")

            # The local cloud on loopback: no proxy applies, so spare requests its per-call
            # look through the proxy environment (13 % of a collector look, measured). Else
            # the calls go direct unless the environment names a proxy.
            loopback = bool(self._settings.oss_endpoint)
            # a connection for each write of a collector look (WRITES_AT_ONCE at once): a
            # pool of oss2's default 10 would close the others after every call
            session = LeanSession(pool_size=max(STORE_POOL_SIZE, WRITES_AT_ONCE),
                                  direct=loopback or not _proxy_environment())
            if loopback:
                session.session.trust_env = False
            self._bucket = oss2.Bucket(auth, self._settings.oss_url, self.name,
                                       region=self._settings.region, session=session)
            # oss2 logs every refused call at INFO (a 409 on a claim is an answer, not news).
            logging.getLogger("oss2").setLevel(logging.WARNING)
        return self._bucket

    def put(self, key: str, data: bytes, content_type: str,
            failed: CloudCallError | None = None) -> None:
        """Write an object (retried when transient: the same bytes again are harmless).
        ``failed``: how an attempt made elsewhere failed already (``Writes``); it counts as
        the first of the attempts."""
        self._call("PutObject", lambda: self._put(key, data, {"Content-Type": content_type}),
                   failed=failed)

    def writes(self) -> Writes:
        """Chains of small objects to write side by side, from one thread
        (``shared.clients.oss_writes``): a collector look's."""
        from shared.clients.oss_writes import Writes

        return Writes(self)

    def _put(self, key: str, data: bytes, headers: dict[str, str]) -> None:
        """PutObject, on the lean session's road when the bucket has one (``put_object``)."""
        bucket = self.bucket
        from shared.clients.oss_transport import LeanSession

        if isinstance(bucket.session, LeanSession):
            bucket.session.put_object(bucket, key, data, headers)
        else:
            bucket.put_object(key, data, headers=headers)

    def claim(self, key: str, data: bytes = b"",
              content_type: str = "application/octet-stream") -> bool:
        """Create the object ``key`` (empty, or ``data``: what the claimer wants known) only if
        it is absent: True if this call created it, False if it was already there (claimed
        before, by this or any other function instance).

        With ``x-oss-forbid-overwrite: true`` OSS refuses to replace an existing object and
        answers 409 ``FileAlreadyExists``
        (https://help.aliyun.com/en/oss/user-guide/0026-00000002). A failed claim is not
        retried: had the first attempt landed, the retry would see its own claim as another's.
        """
        headers = {"Content-Type": content_type, "x-oss-forbid-overwrite": "true"}
        try:
            self._call("PutObject", lambda: self._put(key, data, headers), attempts=1)
        except CloudCallError as exc:
            if exc.error_code == "FileAlreadyExists":
                return False
            raise
        return True

    def release(self, key: str) -> None:
        """Give up a claim (its work was not done), so the next attempt can claim it again."""
        self.delete(key)

    def delete(self, key: str) -> None:
        self._call("DeleteObject", lambda: self.bucket.delete_object(key))

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        try:
            return bytes(self._call("GetObject", lambda: self.bucket.get_object(key).read()))
        except CloudCallError as exc:
            if exc.error_code == "NoSuchKey":
                return None
            raise

    def fetch(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and its stored ``Content-Type``, or None if there is none."""
        def read() -> tuple[bytes, str]:
            answer = self.bucket.get_object(key)
            return bytes(answer.read()), str(answer.headers.get("Content-Type", ""))

        try:
            return self._call("GetObject", read)
        except CloudCallError as exc:
            if exc.error_code == "NoSuchKey":
                return None
            raise

    def entries(self, prefix: str) -> list[tuple[str, int]]:
        """Every object under ``prefix`` with its ``LastModified`` (Unix seconds), all pages."""
        import oss2

        return list(self._call("ListObjects", lambda: [
            (obj.key, int(obj.last_modified))
            for obj in oss2.ObjectIterator(self.bucket, prefix=prefix)]))

    def sign_url(self, key: str, expires: int, domain: str = "") -> str:
        """A presigned GET URL of ``key``, valid ``expires`` seconds (oss2 ``Bucket.sign_url``;
        V4 query signing with the keys this bucket uses). ``domain``: a custom domain bound to
        the bucket (``https://…``, oss2's ``is_cname``) instead of the endpoint."""
        bucket = self.bucket
        if domain:
            import oss2

            bucket = oss2.Bucket(bucket.auth, domain, self.name, is_cname=True,
                                 region=self._settings.region)
        return str(bucket.sign_url("GET", key, expires, slash_safe=True))

    def exists(self, key: str) -> bool:
        return bool(self._call("HeadObject", lambda: self.bucket.object_exists(key)))

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (all pages of ListObjects)."""
        import oss2

        return list(self._call("ListObjects", lambda: [
            obj.key for obj in oss2.ObjectIterator(self.bucket, prefix=prefix)]))

    def list_page(self, prefix: str, marker: str = "", max_keys: int = 1000
                  ) -> tuple[list[str], str]:
        """One page of ListObjects: up to ``max_keys`` keys under ``prefix`` after ``marker``
        (in key order), and the marker of the next page ("" when this was the last).
        ListObjects' ``marker`` / ``max-keys`` (at most 1000):
        https://www.alibabacloud.com/help/en/oss/developer-reference/listobjects."""
        page = self._call("ListObjects", lambda: self.bucket.list_objects(
            prefix=prefix, marker=marker, max_keys=max_keys))
        keys = [obj.key for obj in page.object_list]
        return keys, (page.next_marker or (keys[-1] if keys else "")) if page.is_truncated else ""

    @staticmethod
    def _call(api: str, operation: Any, attempts: int = ATTEMPTS,
              failed: CloudCallError | None = None) -> Any:
        """``operation`` with OSS errors as ``CloudCallError``, retried when transient."""
        import oss2

        def once() -> Any:
            try:
                return operation()
            except oss2.exceptions.OssError as exc:
                raise as_cloud_error(api, exc) from exc

        return retrying(once, attempts, failed)


def as_cloud_error(api: str, exc: BaseException) -> CloudCallError:
    """An oss2 error as ``CloudCallError``: transient for a 5xx, a network error (oss2's
    negative statuses) or a throttling code."""
    import oss2

    oss_error = exc if isinstance(exc, oss2.exceptions.OssError) \
        else oss2.exceptions.RequestError(exc)
    code = oss_error.code or str(oss_error.status)
    transient = oss_error.status >= 500 or oss_error.status < 0 or code in TRANSIENT_CODES
    error = CloudCallError(api, code, oss_error.message or str(oss_error), transient)
    error.__cause__ = oss_error
    return error


def _proxy_environment() -> bool:
    """Does the environment name a proxy (``HTTP_PROXY`` …, as requests reads it)?"""
    import urllib.request

    return bool(urllib.request.getproxies())


def _reuse_crc_tables() -> None:
    """Give oss2 one CRC-64 table per process instead of one per request.

    oss2 checks every upload and download against the CRC-64 OSS returns, and for each one
    builds a ``crcmod.Crc`` — whose constructor computes the 256-entry table in Python, about
    0.5 ms of CPU per PutObject or GetObject (oss2 2.19.1 ``oss2/utils.py``: ``Crc64.__init__``;
    crcmod 1.7 ``crcmod/crcmod.py``: ``Crc.__init__`` -> ``_mkCrcFun`` -> ``_mkTable``). The
    table depends only on the polynomial, so each request gets a fresh copy of one built
    object (``crcmod.Crc.new``: the same table, the CRC reset to its initial value). Every
    check still runs, with the same results; only a start value other than 0 (appends) builds
    its own table, as before.
    """
    import oss2.utils

    base = oss2.utils.Crc64
    if getattr(base, "reuses_tables", False):
        return

    class Crc64(base):  # type: ignore[misc,valid-type]
        reuses_tables = True
        _first: Any = None

        def __init__(self, init_crc: int = 0) -> None:
            first = Crc64._first
            if init_crc != 0 or first is None:
                super().__init__(init_crc)
                if init_crc == 0:
                    Crc64._first = self
                return
            self.crc64 = first.crc64.new()
            self.crc64_combineFun = first.crc64_combineFun

    oss2.utils.Crc64 = Crc64
