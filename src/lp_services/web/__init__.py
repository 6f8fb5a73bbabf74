"""The read-only status site: farm, builds, jobs, recent work, /metrics.

``lp_services.web.site.make_status_resource`` is the entry point; the pages
are tag trees in ``lp_services.web.pages``, read through
``lp_services.web.data``. See docs/status-pages.md.
"""

__all__: list[str] = []
