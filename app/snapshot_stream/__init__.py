"""snapshot-stream: a low-bandwidth MJPEG snapshot streamer for Raspberry Pi USB cameras."""

__version__ = "0.1.0"
