"""twistd plugin: `twistd buildslave`. The code lives in lp_services.slave.tap."""

from twisted.application.service import ServiceMaker

lp_buildslave = ServiceMaker(
    "lp-services buildslave",
    "lp_services.slave.tap",
    "The lp-services builder agent (buildd protocol).",
    "buildslave",
)
