"""The upload size limit, enforced while the request body streams in.

Django hands each uploaded file to its upload handlers chunk by chunk (64 KiB). This handler comes first:
it passes chunks on to the handlers that keep the file (memory, then a temporary file) until the file
passes UPLOAD_MAX_BYTES, and from then on keeps nothing: the rest of the body is read and dropped, so a
file far over the limit never fills memory or disk. The refused file reaches the form as a RefusedUpload,
whose clean_file reports the limit to the user.
"""
from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class RefusedUpload(UploadedFile):
    """Stands in for a file that went over the limit: its name, the bytes seen before it was cut, the reason."""

    def __init__(self, *, name: str, size: int, reason: str) -> None:
        super().__init__(file=None, name=name, content_type="application/octet-stream", size=size)
        self.reason = reason

    def chunks(self, chunk_size=None):
        raise ValueError(f"{self.name} was refused: {self.reason}")


def upload_limit_reason(limit_bytes: int) -> str:
    return f"the file is larger than the upload limit: at most {limit_bytes / 2**20:.0f} MiB"


class SizeLimitedUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.limit_bytes = settings.UPLOAD_MAX_BYTES
        self.bytes_seen = 0
        self.refused = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.bytes_seen = start + len(raw_data)
        if self.bytes_seen > self.limit_bytes:
            self.refused = True
        # None: the handlers after this one (which store the file) receive nothing more of it.
        return None if self.refused else raw_data

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if not self.refused:
            return None  # the next handler returns the file it kept
        return RefusedUpload(name=self.file_name, size=self.bytes_seen, reason=upload_limit_reason(self.limit_bytes))
