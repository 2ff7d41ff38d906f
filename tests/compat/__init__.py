"""Tests for the compat package."""
