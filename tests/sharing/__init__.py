"""Tests of sharing with agencies: consent receipts and bundles."""
