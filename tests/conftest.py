"""Set-up shared by every test module."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _scratch_in_pytest_tmp(tmp_path_factory, monkeypatch):
    """Scratch folders the code makes for itself (ingestion's work folder, when a test
    does not close its ``Ingestion``) go under pytest's temporary folder, which pytest
    prunes, instead of piling up in /tmp run after run."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("scratch")))
