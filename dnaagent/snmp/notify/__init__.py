"""SNMP notifications: trigger events become traps and informs that are never lost.

``targets``   trap sinks and inform targets written as strings, parsed and checked
``settings``  the ``[notifications]`` configuration section
``varbinds``  what a notification carries, and its JSON form in the queue
``queue``     the SQLite-persisted queue: ordering per target, bounds, drop policy
``sender``    sending one notification once (pysnmp 7 on the asyncio loop)
``service``   NotificationService: triggers in, retries driven by one reactor timer
"""
