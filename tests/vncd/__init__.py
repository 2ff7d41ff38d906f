"""Tests for the vncd package."""
