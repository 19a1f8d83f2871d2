"""`relay demo`, with its embedded PostgreSQL server; nothing else imports it."""
