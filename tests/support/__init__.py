"""Test helpers shared by the integration tests: a small DNS server and an in-process smtpd."""
