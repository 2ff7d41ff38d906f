"""Tests for the creds package."""
