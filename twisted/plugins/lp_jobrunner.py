"""twistd plugin: `twistd jobrunner`. The code lives in lp_services.job.tap."""

from twisted.application.service import ServiceMaker

lp_jobrunner = ServiceMaker(
    "lp-services jobrunner",
    "lp_services.job.tap",
    "The lp-services native job runner.",
    "jobrunner",
)
