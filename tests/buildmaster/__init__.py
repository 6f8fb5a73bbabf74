"""Tests of lp_services.buildmaster."""
