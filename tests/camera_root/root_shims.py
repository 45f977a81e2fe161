"""The camera test root's stand-ins under picamera2: what this kernel and the virtual camera lack.

Installed by ``edge_daemon_test_shims.pth`` in the test root's venv only
(scripts/camera-check.sh copies them there); nothing under edge_daemon/
imports or knows them. On a Raspberry Pi none of them is needed.

1. MemfdAllocator, a stand-in for picamera2's DmaAllocator (no DMA heap here).

picamera2 allocates every frame buffer from a DMA heap (/dev/dma_heap/*),
which this machine's kernel does not have (nor udmabuf). This allocator
hands libcamera the same kind of buffer from ``memfd_create`` instead: a file
descriptor libcamera can mmap, as its virtual pipeline handler does to write
each frame. Two differences from the real one, both because of the memfd:

* one libcamera FrameBuffer plane per format plane (Y, then Cb/Cr), at their
  offsets in the one memfd: the virtual pipeline handler writes NV12's
  chroma through the second plane, which a real Pi pipeline never needs;
* no DMA_BUF_IOCTL_SYNC around CPU access: memfd memory is ordinary,
  coherent memory, and the ioctl does not exist for it.

2. Sensor modes for a camera that has no raw stream. Opening any camera,
picamera2 0.3.38 lists its raw modes with generate_configuration([Raw]); Pi
cameras and libcamera's UVC pipeline (USB webcams) answer, libcamera's
virtual camera answers None and Picamera2() fails with "'NoneType' object has
no attribute 'at'". For such a camera the modes are read from a viewfinder
configuration instead (picamera2 only uses their sizes for a non-Pi camera).

3. The media-device lock. libcamera makes a camera one process's at a time
by locking its media device (lockf on /dev/mediaN) in Camera::acquire(); a
second process gets EBUSY, which python3-libcamera raises as "Failed to
acquire camera: Device or resource busy". This kernel has no media bus and
the virtual camera no media device, so nothing is locked and two processes
could share the camera. The stand-in takes the same kind of lock on a file
under /run/edge-daemon-test after Picamera2 acquires the camera, raising
libcamera's error when another process holds it; the kernel drops the lock
when the process ends, as it drops the real one.

All three are applied when ``picamera2.picamera2`` has been imported: its
``DmaAllocator`` name is pointed at MemfdAllocator, and
``Picamera2._get_raw_modes``, ``_open_camera`` and ``close`` are wrapped.
"""

from __future__ import annotations

import fcntl
import importlib.abc
import importlib.machinery
import mmap
import os
import re
import sys
from typing import Any, Optional, Sequence


def _plane_lengths(fmt: str, stride: int, height: int, frame_size: int) -> list[int]:
    """Bytes of each plane of one buffer of ``fmt``: what libcamera's PixelFormatInfo says."""
    if fmt in ("NV12", "NV21"):
        return [stride * height, stride * ((height + 1) // 2)]
    if fmt in ("YUV420", "YVU420"):
        chroma = (stride // 2) * ((height + 1) // 2)
        return [stride * height, chroma, chroma]
    return [frame_size]


def make_allocator_class() -> type:
    import libcamera
    from picamera2.allocators import DmaAllocator
    from picamera2.allocators.allocator import Sync

    class MemfdSync(Sync):  # type: ignore[misc]
        """CPU access to a memfd buffer: nothing to flush."""

        def __init__(self, allocator: Any, fb: Any, write: bool) -> None:
            self.allocator = allocator
            self.fb = fb

        def __enter__(self) -> Any:
            memory = self.allocator.mapped_buffers.get(self.fb)
            if memory is None:
                raise RuntimeError("failed to find buffer in MemfdSync")
            return memory

        def __exit__(self, *exc: Any) -> None:
            return None

    class MemfdAllocator(DmaAllocator):  # type: ignore[misc]
        """DmaAllocator with memfd buffers instead of DMA-heap ones."""

        def __init__(self) -> None:  # no DmaHeap(): there is none to open
            self.mapped_buffers = {}
            self.mapped_buffers_used = {}
            self.frame_buffers = {}
            self.open_fds = []
            self.libcamera_fds = []
            self.sync = MemfdSync
            self.dmaHeap = None

        def allocate(self, libcamera_config: Any, _use_case: Any) -> None:
            self.libcamera_fds = []
            self.cleanup()
            for fd in self.open_fds:
                os.close(fd)
            self.frame_buffers = {}
            self.open_fds = []
            for stream_config in libcamera_config:
                stream = stream_config.stream
                size = stream_config.frame_size
                lengths = _plane_lengths(
                    str(stream_config.pixel_format),
                    stream_config.stride,
                    stream_config.size.height,
                    size,
                )
                buffers = []
                for i in range(stream_config.buffer_count):
                    fd = os.memfd_create(f"picamera2-{i}", os.MFD_CLOEXEC)
                    os.ftruncate(fd, size)
                    self.open_fds.append(fd)
                    planes = []
                    offset = 0
                    for length in lengths:
                        plane = libcamera.FrameBuffer.Plane()
                        plane.fd = fd
                        plane.offset = offset
                        plane.length = length
                        planes.append(plane)
                        offset += length
                    # libcamera keeps its own duplicate of the descriptor;
                    # picamera2 tracks buffers by that number, as here.
                    shared_fd = planes[0].fd
                    self.libcamera_fds.append(shared_fd)
                    self.mapped_buffers_used[shared_fd] = False
                    buffers.append(libcamera.FrameBuffer(planes))
                    self.mapped_buffers[buffers[-1]] = mmap.mmap(
                        fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
                    )
                self.frame_buffers[stream] = buffers

        def close(self) -> None:
            self.libcamera_fds = []
            self.cleanup()
            for fd in self.open_fds:
                os.close(fd)
            self.frame_buffers = {}
            self.open_fds = []

    return MemfdAllocator


def patch_raw_modes(picamera2_class: Any) -> None:
    import libcamera

    original = picamera2_class._get_raw_modes

    def _get_raw_modes(self: Any) -> Any:
        if self.camera.generate_configuration([libcamera.StreamRole.Raw]) is not None:
            return original(self)
        formats = (
            self.camera.generate_configuration([libcamera.StreamRole.Viewfinder]).at(0).formats
        )
        return [
            {"format": str(pix), "size": (size.width, size.height)}
            for pix in formats.pixel_formats
            for size in formats.sizes(pix)
        ]

    picamera2_class._get_raw_modes = _get_raw_modes


LOCK_DIR = "/run/edge-daemon-test"


def patch_camera_lock(picamera2_class: Any) -> None:
    open_camera = picamera2_class._open_camera
    close = picamera2_class.close

    def _open_camera(self: Any) -> None:
        open_camera(self)  # acquires the camera (exclusive within this process)
        os.makedirs(LOCK_DIR, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9]+", "_", str(self.camera.id))
        fd = os.open(f"{LOCK_DIR}/media-{name}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.camera.release()
            self.is_open = False
            raise RuntimeError("Failed to acquire camera: Device or resource busy") from None
        self._media_lock_fd = fd

    def _close(self: Any) -> None:
        try:
            close(self)
        finally:
            fd = getattr(self, "_media_lock_fd", None)
            if fd is not None:
                self._media_lock_fd = None
                os.close(fd)

    picamera2_class._open_camera = _open_camera
    picamera2_class.close = _close


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Points picamera2.picamera2.DmaAllocator at MemfdAllocator once that module is loaded."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Any = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "picamera2.picamera2":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            module.DmaAllocator = make_allocator_class()
            patch_raw_modes(module.Picamera2)
            patch_camera_lock(module.Picamera2)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
