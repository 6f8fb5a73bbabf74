"""lp-services tests (trial), mirrored on src/lp_services."""
