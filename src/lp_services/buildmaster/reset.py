"""Resetting a virtual builder: run its reset command, ``echo`` it until it
answers, then mark it CLEAN."""

from twisted.internet import task

from lp_services.buildmaster import builders as B
from lp_services.buildmaster.agentclient import AgentError
from lp_services.buildmaster.enums import BuilderCleanStatus
from lp_services.buildmaster.farm import ScanError

__all__ = ["reset_virtual"]


async def reset_virtual(scanner, v):
    config = scanner.farm.config
    if not v.reset_command:
        raise ScanError("virtualized builder %s has no reset command"
                        % v.name)
    await scanner.commit(B.set_clean_status, v.id,
                         BuilderCleanStatus.CLEANING, scanner.farm.now())
    scanner.log.info("{name}: resetting", name=scanner.name)
    code = await scanner.farm.run_command(
        v.reset_command,
        {"LP_BUILDER_NAME": v.name, "LP_BUILDER_URL": v.url},
        config.reset_timeout)
    if code != 0:
        raise ScanError("reset command of %s exited with %s"
                        % (v.name, code))
    agent = scanner.farm.agent_for(v)
    clock = scanner.farm.clock
    deadline = clock.seconds() + config.echo_timeout
    while True:
        try:
            await agent.echo("ping")
            break
        except AgentError as error:
            if clock.seconds() >= deadline:
                raise ScanError("%s did not answer within %ss of its "
                                "reset: %s" % (v.name, config.echo_timeout,
                                               error)) from None
            await task.deferLater(clock, config.echo_interval,
                                  lambda: None)
    await scanner.commit(B.set_clean_status, v.id, BuilderCleanStatus.CLEAN,
                         scanner.farm.now(),
                         expected=BuilderCleanStatus.CLEANING)
    scanner.last_state = None
