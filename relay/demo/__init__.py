"""`relay demo` with its embedded PostgreSQL server and its producer; nothing else imports it."""
