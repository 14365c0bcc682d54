"""Protecting the target: every call a job makes to the system it writes to, held to what that system can take."""
