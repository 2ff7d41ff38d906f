"""Tests for vncd.monitor: the QMP and HMP monitors."""
