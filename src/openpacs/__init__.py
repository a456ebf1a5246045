"""OpenPACS: an open-source PACS."""

__version__ = "0.1.0"
