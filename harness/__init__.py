"""restore-drill: boot a backup in an isolated libvirt lab, prove the service works, judge
RTO and RPO, and write evidence an auditor can check."""

#: the one place the version is written (pyproject.toml reads it from here)
__version__ = "0.2.0"
