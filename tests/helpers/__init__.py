"""Helpers shared by the test suites: real processes for end-to-end tests."""
