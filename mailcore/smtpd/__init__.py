"""smtpd: the SMTP server's dialogue, split into small parts.

settings.py (the Config view and ``Reply``), lines.py (CRLF line splitting), state.py (what
a session remembers: transaction, effects, counters), arguments.py (MAIL/RCPT/VRFY
arguments and ESMTP parameters), policy.py (each command's checks and replies, no sockets),
data.py (the DATA reader), bdat.py (BDAT chunks), transfer.py (receiving the content and
committing it to the sink), session.py (one connection's loop and timeouts).
mailcore/server.py opens the listeners.
"""
