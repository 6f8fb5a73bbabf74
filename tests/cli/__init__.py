"""Tests of lp_services.cli."""
