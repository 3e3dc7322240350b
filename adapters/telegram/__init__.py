"""The Telegram face of remixbot (python-telegram-bot v22, asyncio, long polling).

``bot.run_telegram(service)`` runs it until cancelled; ``bot.build_application`` wires the
handlers (``handlers.routes``: the routing table) onto a PTB ``Application``. Buttons carry only
the core's button ids, state lives in the history, so they keep working after a restart.
"""
