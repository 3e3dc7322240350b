"""Where jobs wait and how their progress comes back.

- ``port``      the ``JobQueue`` and ``Engine`` protocols the service and the engine meet at
- ``pacing``    how often waiting and running jobs hear about themselves
- ``local``     ``LocalQueue``: the embedded default, the engine in this process
- ``wire``      what crosses Redis: key and channel names, Lua scripts, the codecs
- ``reconnect`` how both sides of Redis ride out a restart: backoff and patience
- ``arq_queue`` ``ArqQueue``: jobs on arq queues for ``remixbot worker`` processes anywhere
"""
