"""restore-drill: boot a backup in an isolated libvirt lab, prove the service works, judge
RTO and RPO, and write evidence an auditor can check."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("restore-drill")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
