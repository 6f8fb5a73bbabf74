"""twistd plugin: `twistd buildmaster`. The code lives in lp_services.buildmaster.tap."""

from twisted.application.service import ServiceMaker

lp_buildmaster = ServiceMaker(
    "lp-services buildmaster",
    "lp_services.buildmaster.tap",
    "The lp-services buildmaster: scans builders and dispatches builds.",
    "buildmaster",
)
