"""smtpd: the SMTP server's dialogue, split into small parts.

settings.py (the Config view and ``Reply``), lines.py (CRLF line splitting), policy.py (each
command's checks and replies, no sockets), data.py (the DATA reader), session.py (one
connection's loop, timeouts and the durable 250). mailcore/server.py opens the listeners.
"""
