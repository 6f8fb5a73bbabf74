"""The builder agent protocol (docs/protocol.md), shared by the master, the
agent and the fakes: nothing here imports any other room.

- :mod:`.states`: builder states, build results, ``build()`` answers and
  the keys of ``status()``, spelled as launchpad-buildd sends them.
- :mod:`.names`: what a file name and a sha1 on the wire may be, and
  where a content-addressed directory keeps a sha1's bytes.
- :mod:`.wire`: making every string of an answer valid XML-RPC.
"""
