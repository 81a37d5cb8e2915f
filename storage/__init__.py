"""Everything the bot and the worker share: config, the SQLite data model, the job queue and the file store.

Imports neither torch nor discord.
"""
