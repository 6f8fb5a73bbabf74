"""SQL: the current schema, the frozen baseline, numbered patches and views.

Shipped as the ``lp_services.schema`` package; read with importlib.resources.
"""
