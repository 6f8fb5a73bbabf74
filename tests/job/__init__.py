"""Tests of lp_services.job."""
