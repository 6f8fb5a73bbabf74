"""Tests of lp_services.database."""
