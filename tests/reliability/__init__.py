"""Reliability (faults, load) and security (hostile input, auth, privilege, secrets) tests.

Run them alone with `pytest tests/reliability` or `pytest -m "reliability or security"`.
"""
