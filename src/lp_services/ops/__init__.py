"""The operators' read model: one description of any work by id
(:mod:`.work`), the farm's reports from the ops views (:mod:`.reports`),
and the gauges /metrics serves from them (:mod:`.gauges`). It reads every
room's tables; no room imports it but the faces (cli, web)."""
