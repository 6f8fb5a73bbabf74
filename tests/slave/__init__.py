"""Tests of lp_services.slave."""
