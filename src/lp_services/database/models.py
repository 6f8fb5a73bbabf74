"""Importing every Storm model, so string references between them resolve."""

__all__ = ["load_models"]


def load_models() -> None:
    """Import every model module (idempotent and cheap after the first call)."""
    import lp_services.buildmaster.model  # noqa: F401
    import lp_services.database.model  # noqa: F401
    import lp_services.filestore.model  # noqa: F401
    import lp_services.job.model  # noqa: F401
