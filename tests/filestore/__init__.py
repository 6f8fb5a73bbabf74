"""Tests of lp_services.filestore."""
